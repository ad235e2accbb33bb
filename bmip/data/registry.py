"""The paper's datasets as data: CoOp's folder layout, split file, class count, template, sources.

Folder names, image roots and split files are CoOp's (docs/data.md), so an existing CoOp data
folder works as is. Templates are CoOp's
CUSTOM_TEMPLATES; display names match the published result tables.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .sources import CARS_MANUAL, IMAGENET_MANUAL, SOURCES, SUN397_MANUAL, Source


@dataclass(frozen=True)
class DatasetSpec:
    """How to find and read one dataset under a data root.

    `reader` names a function in `coop.READERS` (data, not code branches). `image_dir` is relative to
    `dataset_dir` ("" = the dataset folder itself, as for StanfordCars). `classnames_file` is the
    reader's source of class names, or, for a split file, a file its names are checked against.
    `classname_rule` records how CoOp derived the names (they are already stored in the split files).
    `manual` says how to supply what no live source provides (formatted with `root=`); `required`
    lists the paths (relative to the root) that only that manual step can provide.
    `test_images` lets `bmip plan` size a grid without the data (sources in TEST_IMAGES_SOURCE).
    """

    name: str
    display_name: str
    coop_name: str
    dataset_dir: str
    image_dir: str
    reader: str
    template: str
    num_classes: int
    test_images: int  # images of the test split this package evaluates on (TEST_IMAGES_SOURCE)
    split_file: str | None = None
    classnames_file: str | None = None
    classname_rule: str = ""
    test_only: bool = False
    sample_val: bool = True
    sources: tuple[Source, ...] = ()
    manual: str | None = None
    required: tuple[str, ...] = field(default_factory=tuple)


_PHOTO = "a photo of a {}."
# Where each `test_images` comes from. The test split is CoOp's: its split file's "test" list
# (split_zhou_<Name>.json; the 7 bundled in bmip/data/bundled/ are counted by a test), ImageNet's
# 50,000 validation images, FGVC-Aircraft's images_variant_test.txt (3,333), and the ImageNet
# variants' whole folders (V2 matched-frequency 10,000; Sketch 50,889; A 7,500; R 30,000).
TEST_IMAGES_SOURCE = "CoOp split files (bundled or downloaded), ImageNet val, FGVC images_variant_test.txt, variant folders"


def _spec(name: str, **kw) -> DatasetSpec:
    return DatasetSpec(name=name, sources=SOURCES[name], **kw)


DATASETS: dict[str, DatasetSpec] = {
    s.name: s
    for s in (
        _spec("imagenet", display_name="ImageNet", coop_name="ImageNet", dataset_dir="imagenet", image_dir="images",
              reader="imagenet_folders", template=_PHOTO, num_classes=1000, test_images=50000, classnames_file="classnames.txt",
              classname_rule="classnames.txt; label = index of the wnid folder in sorted order",
              sample_val=False, manual=IMAGENET_MANUAL,
              required=("imagenet/images/train", "imagenet/images/val")),
        _spec("caltech101", display_name="Caltech101", coop_name="Caltech101", dataset_dir="caltech-101",
              image_dir="101_ObjectCategories", reader="coop_json", template=_PHOTO, num_classes=100, test_images=2465,
              split_file="split_zhou_Caltech101.json",
              classname_rule="folder name; BACKGROUND_Google and Faces_easy ignored; airplanes->airplane, "
                             "Faces->face, Leopards->leopard, Motorbikes->motorbike"),
        _spec("oxford_pets", display_name="OxfordPets", coop_name="OxfordPets", dataset_dir="oxford_pets",
              image_dir="images", reader="coop_json", template="a photo of a {}, a type of pet.", num_classes=37, test_images=3669,
              split_file="split_zhou_OxfordPets.json",
              classname_rule="breed = file name without the trailing _<id>, lower-cased"),
        _spec("stanford_cars", display_name="StanfordCars", coop_name="StanfordCars", dataset_dir="stanford_cars",
              image_dir="", reader="coop_json", template=_PHOTO, num_classes=196, test_images=8041,
              split_file="split_zhou_StanfordCars.json",
              classname_rule="devkit name with the year moved to the front ('2012 Audi TTS Coupe')",
              manual=CARS_MANUAL, required=("stanford_cars/cars_train", "stanford_cars/cars_test")),
        _spec("oxford_flowers", display_name="Flowers102", coop_name="OxfordFlowers", dataset_dir="oxford_flowers",
              image_dir="jpg", reader="coop_json", template="a photo of a {}, a type of flower.", num_classes=102, test_images=2463,
              split_file="split_zhou_OxfordFlowers.json", classnames_file="cat_to_name.json",
              classname_rule="cat_to_name.json: name of category label+1"),
        _spec("food101", display_name="Food101", coop_name="Food101", dataset_dir="food-101", image_dir="images",
              reader="coop_json", template="a photo of {}, a type of food.", num_classes=101, test_images=30300,
              split_file="split_zhou_Food101.json", classname_rule="folder name"),
        _spec("fgvc_aircraft", display_name="FGVCAircraft", coop_name="FGVCAircraft", dataset_dir="fgvc_aircraft",
              image_dir="images", reader="fgvc_txt", template="a photo of a {}, a type of aircraft.", num_classes=100, test_images=3333,
              classnames_file="variants.txt",
              classname_rule="variant string; label = line index in variants.txt; "
                             "splits images_variant_{train,val,test}.txt"),
        _spec("sun397", display_name="SUN397", coop_name="SUN397", dataset_dir="sun397", image_dir="SUN397",
              reader="coop_json", template=_PHOTO, num_classes=397, test_images=19850, split_file="split_zhou_SUN397.json",
              classname_rule="'/x/a/b' -> drop the letter, reverse, join with spaces ('b a')",
              manual=SUN397_MANUAL, required=("sun397/SUN397",)),
        _spec("dtd", display_name="DTD", coop_name="DescribableTextures", dataset_dir="dtd", image_dir="images",
              reader="coop_json", template="{} texture.", num_classes=47, test_images=1692,
              split_file="split_zhou_DescribableTextures.json", classname_rule="folder name"),
        _spec("eurosat", display_name="EuroSAT", coop_name="EuroSAT", dataset_dir="eurosat", image_dir="2750",
              reader="coop_json", template="a centered satellite photo of {}.", num_classes=10, test_images=8100,
              split_file="split_zhou_EuroSAT.json",
              classname_rule="CoOp's NEW_CNAMES, e.g. AnnualCrop -> 'Annual Crop Land'"),
        _spec("ucf101", display_name="UCF101", coop_name="UCF101", dataset_dir="ucf101", image_dir="UCF-101-midframes",
              reader="coop_json", template="a photo of a person doing {}.", num_classes=101, test_images=3783,
              split_file="split_zhou_UCF101.json",
              classname_rule="CamelCase action split into words joined by '_' ('Apply_Eye_Makeup')"),
        _spec("imagenetv2", display_name="ImageNetV2", coop_name="ImageNetV2", dataset_dir="imagenetv2",
              image_dir="imagenetv2-matched-frequency-format-val", reader="imagenet_numbered", template=_PHOTO,
              num_classes=1000, test_images=10000, classnames_file="classnames.txt", test_only=True,
              classname_rule="folder <i> is ImageNet label i; names from classnames.txt"),
        _spec("imagenet_sketch", display_name="ImageNet-Sketch", coop_name="ImageNetSketch",
              dataset_dir="imagenet-sketch", image_dir="images", reader="imagenet_wnids", template=_PHOTO,
              num_classes=1000, test_images=50889, classnames_file="classnames.txt", test_only=True,
              classname_rule="wnid folders in sorted order; names from classnames.txt"),
        _spec("imagenet_a", display_name="ImageNet-A", coop_name="ImageNetA", dataset_dir="imagenet-adversarial",
              image_dir="imagenet-a", reader="imagenet_wnids", template=_PHOTO, num_classes=200, test_images=7500,
              classnames_file="classnames.txt", test_only=True,
              classname_rule="200 wnid folders in sorted order (README.txt ignored); names from classnames.txt"),
        _spec("imagenet_r", display_name="ImageNet-R", coop_name="ImageNetR", dataset_dir="imagenet-rendition",
              image_dir="imagenet-r", reader="imagenet_wnids", template=_PHOTO, num_classes=200, test_images=30000,
              classnames_file="classnames.txt", test_only=True,
              classname_rule="200 wnid folders in sorted order (README.txt ignored); names from classnames.txt"),
    )
}


def _norm(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def resolve_name(name: str) -> str | None:
    """The registry key for a name in any common spelling ("OxfordPets", "Flowers102", "dtd"), or None.

    Computed from `DATASETS` on each call, so entries added at run time resolve too.
    """
    wanted = _norm(name)
    for s in DATASETS.values():
        if wanted in {_norm(a) for a in (s.name, s.display_name, s.coop_name, s.dataset_dir)}:
            return s.name
    return None


def get_spec(name: str) -> DatasetSpec:
    """The spec of a registered dataset; the error lists the known names."""
    key = resolve_name(name)
    if key is None or key not in DATASETS:
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    return DATASETS[key]
