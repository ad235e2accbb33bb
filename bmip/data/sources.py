"""Where each dataset's files come from: URLs, sizes and hashes, as data.

What is known and how:
* The 7 CoOp split files and Flowers' cat_to_name.json: size and SHA-256 of the copies in the
  MIT-licensed linzhiqiu/cross_modal_adaptation repository at commit c7e7e68. Those exact copies
  ship with the package (`bmip/data/bundled/`, licence and provenance in its README) and are
  installed from there, verified against the same hashes: no network, and a dead or changed
  upstream URL cannot break a run. The pinned commit and CoOp's own Google Drive copies stay
  listed as mirrors (a copy whose bytes differ is rejected by the same check).
* MD5 sums of the image archives are the ones torchvision's dataset classes verify against
  (torchvision 0.29), and for ImageNet-A/-R those of the torch-uncertainty package. SHA-256 and sizes
  of archives are not published anywhere we could check: they are left None, and the first verified
  download pins them in `<root>/_downloads/manifest.json` (later downloads must match the pin).
* `dead_urls` are CoOp's original links that no longer serve the file; kept for provenance.
* `manual_urls` need a browser, an account or a licence click; they are quoted in error messages.
* CoPrompt's class descriptions (`DESCRIPTIONS`, read by `bmip.data.descriptions`): size and
  SHA-256 of `gpt_file/<name>_prompt.json` in the MIT-licensed ShuvenduRoy/CoPrompt repository at
  commit a2a6c12; the 10 files of the base-to-novel datasets ship with the package
  (`bmip/data/bundled/coprompt/`), ImageNet's is downloaded from that commit and pinned by the first
  download. ImageNet's variants are only ever evaluated, so their files are not needed.
The live URLs could not be tried from the development machine (no internet); a URL that fails or
serves an HTML page is skipped, and the error lists every mirror tried and how to supply the file.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DOWNLOADS_DIR = "_downloads"
# Files shipped with the package (MIT; see bundled/README.md), installed without a download.
BUNDLED_DIR = Path(__file__).with_name("bundled")

_SPLITS_COMMIT = "c7e7e68ae4eeadfab98e7886b2d6c9cf48a7ceb5"
_SPLITS_RAW = f"https://raw.githubusercontent.com/linzhiqiu/cross_modal_adaptation/{_SPLITS_COMMIT}/splits/"


def gdrive_download(file_id: str) -> str:
    """Direct-download URL of a public Google Drive file (confirm=t skips the large-file warning page)."""
    return f"https://drive.usercontent.google.com/download?id={file_id}&export=download&confirm=t"


def gdrive_page(file_id: str) -> str:
    """The Drive page CoOp's instructions link to, for manual download."""
    return f"https://drive.google.com/file/d/{file_id}/view"


@dataclass(frozen=True)
class Source:
    """One file to fetch, and what to do with it.

    A plain file is stored at `dest` (relative to the data root). An archive (`extract`) is stored in
    `<root>/_downloads/<filename>` and extracted into the folder `dest`; `member` selects one path
    inside it (a folder's contents become `dest`'s), and `nested` means that member is itself an
    archive to extract into `dest`. `provides` is the path whose presence means "installed" (default:
    `dest`); an existing CoOp data folder is therefore left alone. `copy_from` is a path under the
    root to copy instead of downloading (ImageNet's classnames.txt for its variants). `bundled` names
    a copy in `BUNDLED_DIR` that is installed (after the same checks) before any URL is tried.
    """

    filename: str
    dest: str
    urls: tuple[str, ...] = ()
    sha256: str | None = None
    size: int | None = None
    md5: str | None = None
    extract: bool = False
    member: str | None = None
    nested: bool = False
    provides: str | None = None
    copy_from: str | None = None
    bundled: str | None = None
    dead_urls: tuple[str, ...] = ()
    manual_urls: tuple[str, ...] = ()
    note: str = ""

    @property
    def installed_path(self) -> str:
        return self.provides or self.dest


def _split(name: str, dataset_dir: str, gdrive_id: str, size: int, sha256: str) -> Source:
    return Source(
        filename=name,
        dest=f"{dataset_dir}/{name}",
        urls=(_SPLITS_RAW + name, gdrive_download(gdrive_id)),
        size=size,
        sha256=sha256,
        bundled=name,
        manual_urls=(gdrive_page(gdrive_id),),
    )


def _drive_file(name: str, dest: str, gdrive_id: str, note: str = "", **kw) -> Source:
    return Source(
        filename=name,
        dest=dest,
        urls=(gdrive_download(gdrive_id),),
        manual_urls=(gdrive_page(gdrive_id),),
        note=note or "CoOp's Google Drive copy; checksum unknown, pinned by the first download",
        **kw,
    )


_IMAGENET_CLASSNAMES_ID = "1-61f_ol79pViBFDG_IDlUQSwoLcn2XXF"


def imagenet_classnames(dataset_dir: str) -> Source:
    """CoOp's classnames.txt ("wnid name" per line); variants copy ImageNet's if it is there."""
    return _drive_file(
        "classnames.txt",
        f"{dataset_dir}/classnames.txt",
        _IMAGENET_CLASSNAMES_ID,
        copy_from=None if dataset_dir == "imagenet" else "imagenet/classnames.txt",
    )


_COPROMPT_COMMIT = "a2a6c12e3622cfe4b3a127f4ba0c4f3eb841418c"
_COPROMPT_RAW = f"https://raw.githubusercontent.com/ShuvenduRoy/CoPrompt/{_COPROMPT_COMMIT}/gpt_file/"


def _descriptions(name: str, dataset_dir: str, size: int | None = None, sha256: str | None = None) -> Source:
    """CoPrompt's LLM-written class descriptions ({class name: [sentences]}), beside the dataset."""
    filename = f"{name}_prompt.json"
    return Source(
        filename=filename,
        dest=f"{dataset_dir}/{filename}",
        urls=(_COPROMPT_RAW + filename,),
        size=size,
        sha256=sha256,
        bundled=f"coprompt/{filename}" if sha256 else None,
        note="CoPrompt's class descriptions" + ("" if sha256 else "; checksum pinned by the first download"),
    )


# Registry dataset -> its description file. Datasets without one fall back to their template.
DESCRIPTIONS: dict[str, Source] = {
    "imagenet": _descriptions("imagenet", "imagenet"),
    "caltech101": _descriptions("caltech", "caltech-101", 421183,
                                "e98b2b4809f04d9055296696518a78584d4252235d523e3093e9c52b3dba7564"),
    "oxford_pets": _descriptions("oxford_pets", "oxford_pets", 49571,
                                 "14a697c4e72e0115189b501a4be64ef033bf94fcb540819632cb34afe9d29ff2"),
    "stanford_cars": _descriptions("stanford_cars", "stanford_cars", 905180,
                                   "3505d5d67a06b76af14e3e74d6543da3d59aa4b29869a30cbbb56adbc751fe8e"),
    "oxford_flowers": _descriptions("oxford_flowers", "oxford_flowers", 200284,
                                    "0202f638ed18a2633375f84175b3db70bfc14927c6c82d57a87d42a1e722f844"),
    "food101": _descriptions("food101", "food-101", 685866,
                             "a9564b8e8e371b06416f7ae9e5508853431fb3eae6a4212843802bd07e1a8c0d"),
    "fgvc_aircraft": _descriptions("fgvc", "fgvc_aircraft", 845966,
                                   "a29ddbf5c1cab48b6fbcbb9e4930df55e69f83d20d0fc508969d7c75a2457fa2"),
    "sun397": _descriptions("sun397", "sun397", 1890060,
                            "f743422d1786b66b019c4f7d80b181a00be0b6a783a36c5fb928aa45d59662d4"),
    "dtd": _descriptions("dtd", "dtd", 197272, "5dd358b0bd09c98d6d4d6ed4d5048f5c1d4dddc24cf3a8c69d45bb4d68287991"),
    "eurosat": _descriptions("eurosat", "eurosat", 15439,
                             "a6aaa8850fd902ed74bfab940e5aac2f1b3ebfdecf7b3c6fb2201c91c9339e06"),
    "ucf101": _descriptions("ucf101", "ucf101", 697778,
                            "39bc7fbf0e7e60d48cc9e50ed008e6a5d7003c2d68713f0f76ec823cbdce0d09"),
}

_OX = "https://www.robots.ox.ac.uk/~vgg/data/"

SOURCES: dict[str, tuple[Source, ...]] = {
    "imagenet": (imagenet_classnames("imagenet"), DESCRIPTIONS["imagenet"]),
    "caltech101": (
        Source(
            filename="caltech-101.zip",
            dest="caltech-101",
            urls=("https://data.caltech.edu/records/mzrjq-6wc02/files/caltech-101.zip",),
            md5="3138e1922a9193bfa496528edbbc45d0",
            extract=True,
            member="caltech-101/101_ObjectCategories.tar.gz",
            nested=True,
            provides="caltech-101/101_ObjectCategories",
            dead_urls=("http://www.vision.caltech.edu/Image_Datasets/Caltech101/101_ObjectCategories.tar.gz",),
            note="CaltechDATA record of Caltech101 (the zip holds 101_ObjectCategories.tar.gz)",
        ),
        _split("split_zhou_Caltech101.json", "caltech-101", "1hyarUivQE36mY6jSomru6Fjd-JzwcCzN", 809184,
               "52ce83205ff8ff8a1a18119aad6376120ae35c36e783a984bc560cbf10e73fa5"),
        DESCRIPTIONS["caltech101"],
    ),
    "oxford_pets": (
        Source(filename="images.tar.gz", dest="oxford_pets", urls=(_OX + "pets/data/images.tar.gz",),
               md5="5c4f3ee8e5d25df40f4fd59a7f44e54c", extract=True, provides="oxford_pets/images"),
        Source(filename="annotations.tar.gz", dest="oxford_pets", urls=(_OX + "pets/data/annotations.tar.gz",),
               md5="95a8c909bbe2e81eed6a22bccdf3f68f", extract=True, provides="oxford_pets/annotations"),
        _split("split_zhou_OxfordPets.json", "oxford_pets", "1501r8Ber4nNKvmlFVQZ8SeUHTcdTTEqs", 724217,
               "d7f3ffe65b3919f95132e51422894ae18686b83c331fd8c0adcdc3dc2de6301e"),
        DESCRIPTIONS["oxford_pets"],
    ),
    "stanford_cars": (
        Source(filename="cars_train.tgz", dest="stanford_cars", extract=True, provides="stanford_cars/cars_train",
               dead_urls=("http://ai.stanford.edu/~jkrause/car196/cars_train.tgz",),
               note="the Stanford links are dead and no official mirror is known"),
        Source(filename="cars_test.tgz", dest="stanford_cars", extract=True, provides="stanford_cars/cars_test",
               dead_urls=("http://ai.stanford.edu/~jkrause/car196/cars_test.tgz",),
               note="the Stanford links are dead and no official mirror is known"),
        _split("split_zhou_StanfordCars.json", "stanford_cars", "1ObCFbaAgVu0I-k_Au-gIUcefirdAuizT", 1855652,
               "40acee7aa65c8e4727a32d90e884b7c3f8960b523422317e163f7af65432959d"),
        DESCRIPTIONS["stanford_cars"],
    ),
    "oxford_flowers": (
        Source(filename="102flowers.tgz", dest="oxford_flowers", urls=(_OX + "flowers/102/102flowers.tgz",),
               md5="52808999861908f626f3c1f4e79d11fa", extract=True, provides="oxford_flowers/jpg"),
        Source(filename="imagelabels.mat", dest="oxford_flowers/imagelabels.mat",
               urls=(_OX + "flowers/102/imagelabels.mat",), md5="e0620be6f572b9609742df49c70aed4d"),
        Source(filename="cat_to_name.json", dest="oxford_flowers/cat_to_name.json",
               urls=(_SPLITS_RAW + "cat_to_name.json", gdrive_download("1AkcxCXeK_RCGCEC_GvmWxjcjaNhu-at0")),
               size=2212, sha256="0469f1ad7fe0072d98155c49aa58649d998edbbe3326229003aa5f7228525236",
               bundled="cat_to_name.json", manual_urls=(gdrive_page("1AkcxCXeK_RCGCEC_GvmWxjcjaNhu-at0"),)),
        _split("split_zhou_OxfordFlowers.json", "oxford_flowers", "1Pp0sRXzZFZq15zVOzKjKBu4A9i01nozT", 771139,
               "2f50c42fc1a17ca13c271cb4269b1347bdb43d2be672e34f74a4e4cbfbcca794"),
        DESCRIPTIONS["oxford_flowers"],
    ),
    "food101": (
        Source(filename="food-101.tar.gz", dest="food-101", urls=("http://data.vision.ee.ethz.ch/cvl/food-101.tar.gz",),
               md5="85eeb15f3717b99a5da872d97d918f87", extract=True, member="food-101",
               provides="food-101/images"),
        _drive_file("split_zhou_Food101.json", "food-101/split_zhou_Food101.json", "1QK0tGi096I0Ba6kggatX1ee6dJFIcEJl"),
        DESCRIPTIONS["food101"],
    ),
    "fgvc_aircraft": (
        Source(filename="fgvc-aircraft-2013b.tar.gz", dest="fgvc_aircraft",
               urls=(_OX + "fgvc-aircraft/archives/fgvc-aircraft-2013b.tar.gz",), extract=True,
               member="fgvc-aircraft-2013b/data", provides="fgvc_aircraft/images",
               note="CoOp keeps only the archive's data/ folder, renamed fgvc_aircraft/"),
        DESCRIPTIONS["fgvc_aircraft"],
    ),
    "sun397": (
        Source(filename="SUN397.tar.gz", dest="sun397", urls=("http://vision.princeton.edu/projects/2010/SUN/SUN397.tar.gz",),
               md5="8ca2778205c41d23104230ba66911c7a", extract=True, provides="sun397/SUN397"),
        _drive_file("split_zhou_SUN397.json", "sun397/split_zhou_SUN397.json", "1y2RD81BYuiyvebdN-JymPfyWYcd8_MUq"),
        DESCRIPTIONS["sun397"],
    ),
    "dtd": (
        Source(filename="dtd-r1.0.1.tar.gz", dest="dtd", urls=(_OX + "dtd/download/dtd-r1.0.1.tar.gz",),
               md5="fff73e5086ae6bdbea199a49dfb8a4c1", extract=True, member="dtd", provides="dtd/images"),
        _split("split_zhou_DescribableTextures.json", "dtd", "1u3_QfB467jqHgNXC00UIzbLZRQCg2S7x", 563702,
               "f26ebeccd2b58e68d70f07a0dc39fe49bf7b69024bac34396b954dfd87969c38"),
        DESCRIPTIONS["dtd"],
    ),
    "eurosat": (
        Source(filename="EuroSAT.zip", dest="eurosat",
               urls=("https://huggingface.co/datasets/torchgeo/eurosat/resolve/"
                     "c877bcd43f099cd0196738f714544e355477f3fd/EuroSAT.zip",),
               md5="c8fa014336c82ac7804f0398fcb19387", extract=True, provides="eurosat/2750",
               dead_urls=("http://madm.dfki.de/files/sentinel/EuroSAT.zip",),
               note="TorchGeo's Hugging Face copy of the RGB EuroSAT.zip, pinned to a commit"),
        _split("split_zhou_EuroSAT.json", "eurosat", "1Ip7yaCWFi0eaOFUGga0lUdVi_DDQth1o", 3006492,
               "541503a77d0b26b735d85ec7a3e672804fe0aa466c2e5f07da772cc6c0af8ad2"),
        DESCRIPTIONS["eurosat"],
    ),
    "ucf101": (
        _drive_file("UCF-101-midframes.zip", "ucf101", "10Jqome3vtUA2keJkNanAiFpgbyC9Hc2O", extract=True,
                    provides="ucf101/UCF-101-midframes",
                    note="CoOp's middle-frame extraction, only on Google Drive; checksum pinned by the first download"),
        _split("split_zhou_UCF101.json", "ucf101", "1I0S0q91hJfsV9Gf4xDIjgDq4AqBNJb1y", 1557485,
               "d78cb834f7c5792ceaff2c5ee2d7c76a9e4086e48a3a6b01232989d29cbefdd8"),
        DESCRIPTIONS["ucf101"],
    ),
    "imagenetv2": (
        Source(filename="imagenetv2-matched-frequency.tar.gz", dest="imagenetv2",
               urls=("https://huggingface.co/datasets/vaishaal/ImageNetV2/resolve/main/imagenetv2-matched-frequency.tar.gz",
                     "https://s3-us-west-2.amazonaws.com/imagenetv2public/imagenetv2-matched-frequency.tar.gz"),
               extract=True, provides="imagenetv2/imagenetv2-matched-frequency-format-val",
               note="the authors' Hugging Face copy first, CoOp's S3 link second"),
        imagenet_classnames("imagenetv2"),
    ),
    "imagenet_sketch": (
        Source(filename="ImageNet-Sketch.zip", dest="imagenet-sketch/images",
               urls=("https://huggingface.co/datasets/songweig/imagenet_sketch/resolve/main/data/ImageNet-Sketch.zip",
                     gdrive_download("1Mj0i5HBthqH1p_yeXzsg22gZduvgoNeA")),
               extract=True, member="sketch", manual_urls=(gdrive_page("1Mj0i5HBthqH1p_yeXzsg22gZduvgoNeA"),),
               note="the zip's sketch/ folder becomes imagenet-sketch/images/ (about 8 GB)"),
        imagenet_classnames("imagenet-sketch"),
    ),
    "imagenet_a": (
        Source(filename="imagenet-a.tar", dest="imagenet-adversarial",
               urls=("https://people.eecs.berkeley.edu/~hendrycks/imagenet-a.tar",),
               md5="c3e55429088dc681f30d81f4726b6595", extract=True, provides="imagenet-adversarial/imagenet-a"),
        imagenet_classnames("imagenet-adversarial"),
    ),
    "imagenet_r": (
        Source(filename="imagenet-r.tar", dest="imagenet-rendition",
               urls=("https://people.eecs.berkeley.edu/~hendrycks/imagenet-r.tar",),
               md5="a61312130a589d0ca1a8fca1f2bd3337", extract=True, provides="imagenet-rendition/imagenet-r"),
        imagenet_classnames("imagenet-rendition"),
    ),
}

IMAGENET_MANUAL = """ImageNet (ILSVRC-2012) must be downloaded by hand: its licence requires an account at
https://image-net.org (Download > ILSVRC 2012). Get ILSVRC2012_img_train.tar (138 GB,
md5 1d675b47d978889d74fa0da5fadfb00e) and ILSVRC2012_img_val.tar (6.3 GB,
md5 29b22e2961454d5413ddabcf34fc5622), then arrange them as CoOp expects:
  {root}/imagenet/images/train/<wnid>/*.JPEG   (1000 folders n01440764 ... n15075141)
  {root}/imagenet/images/val/<wnid>/*.JPEG     (the 50,000 val images sorted into the same 1000 folders,
                                                e.g. with torchvision.datasets.ImageNet's val parser)
Existing copies can be symlinked: ln -s /path/to/train {root}/imagenet/images/train
and put CoOp's classnames.txt ("wnid name" per line) at {root}/imagenet/classnames.txt
(from """ + gdrive_page(_IMAGENET_CLASSNAMES_ID) + "; `bmip download imagenet` tries to fetch it)."
