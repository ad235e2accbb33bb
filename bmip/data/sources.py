"""Where each dataset's files come from: URLs, sizes and published hashes, as data.

What is known and how (`Source.published` names the record for each file):
* Image archives: the MD5 sums torchvision's dataset classes verify against (torchvision 0.29; for
  Stanford Cars, torchvision <= 0.15, before its download was removed), torch-uncertainty's for
  ImageNet-A/-R, and the sizes and SHA-256 sums of the TensorFlow Datasets checksum registry
  (`tensorflow/datasets`, `url_checksums/<name>.txt` or `datasets/<name>/checksums.tsv`) where TFDS
  downloads the same URL; ImageNet-Sketch's Hugging Face copy has the SHA-256 that huggingface/datasets
  recorded for it (`datasets/imagenet_sketch/dataset_infos.json`), equal to TFDS's for the Drive copy.
  Every file is checked against all of these in one read (hashing.py).
* The 7 CoOp split files and Flowers' cat_to_name.json: size and SHA-256 of the copies in the
  MIT-licensed linzhiqiu/cross_modal_adaptation repository at commit c7e7e68. Those exact copies
  ship with the package (`bmip/data/bundled/`, licence and provenance in its README) and are
  installed from there: no network, and a dead or changed upstream URL cannot break a run. Food101's
  and SUN397's split files are fetched from the same commit (Google Drive as the fallback) and
  checked against their git blob ids there (only the first 8 hex digits were at hand: see
  `_SPLITS_BLOB_NOTE`); their SHA-256 is then pinned by the first verified download.
* ImageNet's classnames.txt ships with the package (`bundled/imagenet/`, CLIP's class names, MIT).
* Trust on first use only where nothing is published: UCF101's middle-frame zip (CoOp's own Drive
  file) and ImageNet's CoPrompt descriptions. The first verified download pins their SHA-256 in
  `<root>/_downloads/manifest.json`; later downloads must match the pin.
* `dead_urls` are original links that no longer serve the file, kept for provenance; `manual_urls`
  need a browser, an account or a licence click; both are quoted in error messages. Stanford Cars
  and SUN397 have no live source (DatasetSpec.manual says how to supply them and what to check).
* Hugging Face URLs (`.../resolve/<revision>/<path>`) are fetched with huggingface_hub (hub.py),
  Drive URLs with Drive's pages understood (gdrive.py), every other URL with urllib (fetch.py).
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

from .gdrive import gdrive_download, gdrive_page

DOWNLOADS_DIR = "_downloads"
# Files shipped with the package (see bundled/README.md), installed without a download.
BUNDLED_DIR = Path(__file__).with_name("bundled")

_SPLITS_COMMIT = "c7e7e68ae4eeadfab98e7886b2d6c9cf48a7ceb5"
_SPLITS_RAW = f"https://raw.githubusercontent.com/linzhiqiu/cross_modal_adaptation/{_SPLITS_COMMIT}/splits/"
_SPLITS_PUBLISHED = "linzhiqiu/cross_modal_adaptation@c7e7e68, splits/"

_TFDS = "TensorFlow Datasets checksum registry"
_TV = "torchvision"


@dataclass(frozen=True)
class Source:
    """One file to fetch, and what to do with it.

    A plain file is stored at `dest` (relative to the data root). An archive (`extract`) is stored in
    `<root>/_downloads/<filename>` and extracted into the folder `dest`; `member` selects one path
    inside it (a folder's contents become `dest`'s), and `nested` means that member is itself an
    archive to extract into `dest`. `provides` is the path whose presence means "installed" (default:
    `dest`); an existing CoOp data folder is therefore left alone. `bundled` names a copy in
    `BUNDLED_DIR` that is installed (after the same checks) before any URL is tried. `size`,
    `sha256`, `md5` and `git_blob` (a git blob id, or its leading digits) are checked where given;
    `published` says who published them.
    """

    filename: str
    dest: str
    urls: tuple[str, ...] = ()
    sha256: str | None = None
    size: int | None = None
    md5: str | None = None
    git_blob: str | None = None
    published: str = ""
    extract: bool = False
    member: str | None = None
    nested: bool = False
    provides: str | None = None
    bundled: str | None = None
    dead_urls: tuple[str, ...] = ()
    manual_urls: tuple[str, ...] = ()
    note: str = ""

    @property
    def installed_path(self) -> str:
        return self.provides or self.dest

    @property
    def has_published_checksum(self) -> bool:
        return bool(self.sha256 or self.md5 or self.git_blob)


def _split(name: str, dataset_dir: str, gdrive_id: str, size: int, sha256: str) -> Source:
    return Source(
        filename=name,
        dest=f"{dataset_dir}/{name}",
        urls=(_SPLITS_RAW + name, gdrive_download(gdrive_id)),
        size=size,
        sha256=sha256,
        published=_SPLITS_PUBLISHED + name,
        bundled=name,
        manual_urls=(gdrive_page(gdrive_id),),
    )


# Food101's and SUN397's split files are in the same commit as the seven bundled ones, but their
# bytes were not at hand where bmip was built: only the leading 8 hex digits of their git blob ids in
# that commit are on record. A prefix catches any corrupted or different copy (from the Drive
# fallback, say); the raw URL itself names the commit, whose hash covers the file's bytes.
_SPLITS_BLOB_NOTE = "checked against the leading digits of its git blob id at that commit"


def _pinned_split(name: str, dataset_dir: str, gdrive_id: str, git_blob: str) -> Source:
    return Source(
        filename=name,
        dest=f"{dataset_dir}/{name}",
        urls=(_SPLITS_RAW + name, gdrive_download(gdrive_id)),
        git_blob=git_blob,
        published=f"git blob id in {_SPLITS_PUBLISHED}{name}",
        manual_urls=(gdrive_page(gdrive_id),),
        note=f"CoOp's split, from the pinned commit (Google Drive as fallback); {_SPLITS_BLOB_NOTE}",
    )


_IMAGENET_CLASSNAMES_ID = "1-61f_ol79pViBFDG_IDlUQSwoLcn2XXF"


def imagenet_classnames(dataset_dir: str) -> Source:
    """CoOp's classnames.txt ("wnid name" per line, CLIP's names), installed from the bundled copy."""
    return Source(
        filename="classnames.txt",
        dest=f"{dataset_dir}/classnames.txt",
        size=21814,
        sha256="89e0b642c6697a3a43a06a2bb65f9fefb3ca295ccc5f4ba9ce385f1a3a58c629",
        published="bmip/data/bundled/imagenet/README.md (CLIP's class names, ImageNet wnids)",
        bundled="imagenet/classnames.txt",
        manual_urls=(gdrive_page(_IMAGENET_CLASSNAMES_ID),),
        note="bundled with bmip; CoOp's Google Drive copy (manual_urls) was not compared with it byte for byte",
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
        published=f"ShuvenduRoy/CoPrompt@a2a6c12, gpt_file/{filename}" if sha256 else "",
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
_HF = "https://huggingface.co/datasets/"
# ImageNetV2's Hugging Face repository at the commit that holds the archive (its last change,
# 2023-03-19, as recorded by third-party reproductions that pin it); `main` is the fallback, and
# either copy must match TFDS's published size and SHA-256.
_IMAGENETV2_REVISION = "d626240be2538720e83103a0e1178d24aca8b12c"

SOURCES: dict[str, tuple[Source, ...]] = {
    "imagenet": (imagenet_classnames("imagenet"), DESCRIPTIONS["imagenet"]),
    "caltech101": (
        Source(
            filename="caltech-101.zip",
            dest="caltech-101",
            urls=("https://data.caltech.edu/records/mzrjq-6wc02/files/caltech-101.zip",),
            md5="3138e1922a9193bfa496528edbbc45d0",
            size=137414764,
            sha256="331234750fc7f77520e50d9565e8b6907b03565e30320da1401130db08c61f91",
            published=f"MD5: {_TV} 0.29 caltech.py; size, SHA-256: {_TFDS}, datasets/caltech101/checksums.tsv",
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
               md5="5c4f3ee8e5d25df40f4fd59a7f44e54c", published=f"{_TV} 0.29 oxford_iiit_pet.py",
               extract=True, provides="oxford_pets/images"),
        Source(filename="annotations.tar.gz", dest="oxford_pets", urls=(_OX + "pets/data/annotations.tar.gz",),
               md5="95a8c909bbe2e81eed6a22bccdf3f68f", published=f"{_TV} 0.29 oxford_iiit_pet.py",
               extract=True, provides="oxford_pets/annotations"),
        _split("split_zhou_OxfordPets.json", "oxford_pets", "1501r8Ber4nNKvmlFVQZ8SeUHTcdTTEqs", 724217,
               "d7f3ffe65b3919f95132e51422894ae18686b83c331fd8c0adcdc3dc2de6301e"),
        DESCRIPTIONS["oxford_pets"],
    ),
    "stanford_cars": (
        Source(filename="cars_train.tgz", dest="stanford_cars", extract=True, provides="stanford_cars/cars_train",
               size=979269282, md5="065e5b463ae28d29e77c1b4b166cfe61",
               sha256="512b227b30e2f0a8aab9e09485786ab4479582073a144998da74d64b801fd288",
               published=f"MD5: {_TV} <= 0.15 stanford_cars.py; size, SHA-256: {_TFDS}, url_checksums/cars196.txt",
               dead_urls=("http://ai.stanford.edu/~jkrause/car196/cars_train.tgz",),
               note="the Stanford links are dead and no official mirror is known"),
        Source(filename="cars_test.tgz", dest="stanford_cars", extract=True, provides="stanford_cars/cars_test",
               size=977350468, md5="4ce7ebf6a94d07f1952d94dd34c4d501",
               sha256="bffea656d6f425cba3c91c6d83336e4c5f86c6cffd8975b0f375d3a10da8e243",
               published=f"MD5: {_TV} <= 0.15 stanford_cars.py; size, SHA-256: {_TFDS}, url_checksums/cars196.txt",
               dead_urls=("http://ai.stanford.edu/~jkrause/car196/cars_test.tgz",),
               note="the Stanford links are dead and no official mirror is known"),
        _split("split_zhou_StanfordCars.json", "stanford_cars", "1ObCFbaAgVu0I-k_Au-gIUcefirdAuizT", 1855652,
               "40acee7aa65c8e4727a32d90e884b7c3f8960b523422317e163f7af65432959d"),
        DESCRIPTIONS["stanford_cars"],
    ),
    "oxford_flowers": (
        Source(filename="102flowers.tgz", dest="oxford_flowers", urls=(_OX + "flowers/102/102flowers.tgz",),
               md5="52808999861908f626f3c1f4e79d11fa", published=f"{_TV} 0.29 flowers102.py",
               extract=True, provides="oxford_flowers/jpg"),
        Source(filename="imagelabels.mat", dest="oxford_flowers/imagelabels.mat",
               urls=(_OX + "flowers/102/imagelabels.mat",), md5="e0620be6f572b9609742df49c70aed4d",
               published=f"{_TV} 0.29 flowers102.py"),
        Source(filename="cat_to_name.json", dest="oxford_flowers/cat_to_name.json",
               urls=(_SPLITS_RAW + "cat_to_name.json", gdrive_download("1AkcxCXeK_RCGCEC_GvmWxjcjaNhu-at0")),
               size=2212, sha256="0469f1ad7fe0072d98155c49aa58649d998edbbe3326229003aa5f7228525236",
               published=_SPLITS_PUBLISHED + "cat_to_name.json",
               bundled="cat_to_name.json", manual_urls=(gdrive_page("1AkcxCXeK_RCGCEC_GvmWxjcjaNhu-at0"),)),
        _split("split_zhou_OxfordFlowers.json", "oxford_flowers", "1Pp0sRXzZFZq15zVOzKjKBu4A9i01nozT", 771139,
               "2f50c42fc1a17ca13c271cb4269b1347bdb43d2be672e34f74a4e4cbfbcca794"),
        DESCRIPTIONS["oxford_flowers"],
    ),
    "food101": (
        Source(filename="food-101.tar.gz", dest="food-101", urls=("http://data.vision.ee.ethz.ch/cvl/food-101.tar.gz",),
               md5="85eeb15f3717b99a5da872d97d918f87", size=4996278331,
               sha256="d97d15e438b7f4498f96086a4f7e2fa42a32f2712e87d3295441b2b6314053a4",
               published=f"MD5: {_TV} 0.29 food101.py; size, SHA-256: {_TFDS}, url_checksums/food101.txt",
               extract=True, member="food-101", provides="food-101/images",
               note="plain http: integrity comes from the published checksums"),
        _pinned_split("split_zhou_Food101.json", "food-101", "1QK0tGi096I0Ba6kggatX1ee6dJFIcEJl", "39557040"),
        DESCRIPTIONS["food101"],
    ),
    "fgvc_aircraft": (
        Source(filename="fgvc-aircraft-2013b.tar.gz", dest="fgvc_aircraft",
               urls=(_OX + "fgvc-aircraft/archives/fgvc-aircraft-2013b.tar.gz",), size=2770575360,
               sha256="d5f68b1b81d6d7831eb9d5c5517074176b5dfbce6bcb43dc14ed1c66a87b8d75",
               published=f"{_TFDS}, url_checksums/fgvc.txt (torchvision publishes none)", extract=True,
               member="fgvc-aircraft-2013b/data", provides="fgvc_aircraft/images",
               note="CoOp keeps only the archive's data/ folder, renamed fgvc_aircraft/"),
        DESCRIPTIONS["fgvc_aircraft"],
    ),
    "sun397": (
        Source(filename="SUN397.tar.gz", dest="sun397", size=39077296924, md5="8ca2778205c41d23104230ba66911c7a",
               sha256="f404130965a7ad77bed5ececc71e720ab50f3cc1e1bb257257610d38f3b928ec",
               published=f"MD5: {_TV} 0.29 sun397.py; size, SHA-256: {_TFDS}, url_checksums/sun397.txt",
               extract=True, provides="sun397/SUN397",
               dead_urls=("http://vision.princeton.edu/projects/2010/SUN/SUN397.tar.gz",
                          "https://vision.princeton.edu/projects/2010/SUN/SUN397.tar.gz"),
               note="Princeton's link and the MIT CSAIL mirror answer 404 (pytorch/vision#9348, CoOp#90)"),
        _pinned_split("split_zhou_SUN397.json", "sun397", "1y2RD81BYuiyvebdN-JymPfyWYcd8_MUq", "8d5725db"),
        DESCRIPTIONS["sun397"],
    ),
    "dtd": (
        Source(filename="dtd-r1.0.1.tar.gz", dest="dtd", urls=(_OX + "dtd/download/dtd-r1.0.1.tar.gz",),
               md5="fff73e5086ae6bdbea199a49dfb8a4c1", size=625239812,
               sha256="e42855a52a4950a3b59612834602aa253914755c95b0cff9ead6d07395f8e205",
               published=f"MD5: {_TV} 0.29 dtd.py; size, SHA-256: {_TFDS}, url_checksums/dtd.txt",
               extract=True, member="dtd", provides="dtd/images"),
        _split("split_zhou_DescribableTextures.json", "dtd", "1u3_QfB467jqHgNXC00UIzbLZRQCg2S7x", 563702,
               "f26ebeccd2b58e68d70f07a0dc39fe49bf7b69024bac34396b954dfd87969c38"),
        DESCRIPTIONS["dtd"],
    ),
    "eurosat": (
        Source(filename="EuroSAT.zip", dest="eurosat",
               urls=(_HF + "torchgeo/eurosat/resolve/c877bcd43f099cd0196738f714544e355477f3fd/EuroSAT.zip",),
               md5="c8fa014336c82ac7804f0398fcb19387", published=f"{_TV} 0.29 eurosat.py (same URL and revision)",
               extract=True, provides="eurosat/2750",
               dead_urls=("http://madm.dfki.de/files/sentinel/EuroSAT.zip",),
               note="TorchGeo's Hugging Face copy of the RGB EuroSAT.zip, pinned to a commit"),
        _split("split_zhou_EuroSAT.json", "eurosat", "1Ip7yaCWFi0eaOFUGga0lUdVi_DDQth1o", 3006492,
               "541503a77d0b26b735d85ec7a3e672804fe0aa466c2e5f07da772cc6c0af8ad2"),
        DESCRIPTIONS["eurosat"],
    ),
    "ucf101": (
        # Trust on first use: CoOp's middle-frame zip exists only on its Google Drive and no checksum
        # of it is published anywhere; the first verified download pins its SHA-256 in the manifest.
        Source(filename="UCF-101-midframes.zip", dest="ucf101",
               urls=(gdrive_download("10Jqome3vtUA2keJkNanAiFpgbyC9Hc2O"),),
               manual_urls=(gdrive_page("10Jqome3vtUA2keJkNanAiFpgbyC9Hc2O"),), extract=True,
               provides="ucf101/UCF-101-midframes",
               note="CoOp's middle-frame extraction, only on Google Drive; no published checksum, pinned by the "
                    "first download"),
        _split("split_zhou_UCF101.json", "ucf101", "1I0S0q91hJfsV9Gf4xDIjgDq4AqBNJb1y", 1557485,
               "d78cb834f7c5792ceaff2c5ee2d7c76a9e4086e48a3a6b01232989d29cbefdd8"),
        DESCRIPTIONS["ucf101"],
    ),
    "imagenetv2": (
        Source(filename="imagenetv2-matched-frequency.tar.gz", dest="imagenetv2",
               urls=(f"{_HF}vaishaal/ImageNetV2/resolve/{_IMAGENETV2_REVISION}/imagenetv2-matched-frequency.tar.gz",
                     f"{_HF}vaishaal/ImageNetV2/resolve/main/imagenetv2-matched-frequency.tar.gz",
                     "https://s3-us-west-2.amazonaws.com/imagenetv2public/imagenetv2-matched-frequency.tar.gz"),
               size=1264079360, sha256="f0c37fdf925916b19ea1323cd9a2208cdb6959ba2c32eef2a7fc393835c9ca7c",
               published=f"{_TFDS}, datasets/imagenet_v2/checksums.tsv (the Hugging Face URL)",
               extract=True, provides="imagenetv2/imagenetv2-matched-frequency-format-val",
               note="the authors' Hugging Face copy (pinned commit, then main), CoOp's S3 link (403 since 2023) last"),
        imagenet_classnames("imagenetv2"),
    ),
    "imagenet_sketch": (
        Source(filename="ImageNet-Sketch.zip", dest="imagenet-sketch/images",
               urls=(f"{_HF}songweig/imagenet_sketch/resolve/main/data/ImageNet-Sketch.zip",
                     gdrive_download("1Mj0i5HBthqH1p_yeXzsg22gZduvgoNeA")),
               size=7593573012, sha256="4d3ce6b82a7c48aabf14aeac105eb533e75707f152cc858f55bfc022031a72ed",
               published="huggingface/datasets, datasets/imagenet_sketch/dataset_infos.json (the Hugging Face "
                         f"copy); the same values in {_TFDS}, datasets/imagenet_sketch/checksums.tsv (the Drive copy)",
               extract=True, member="sketch", manual_urls=(gdrive_page("1Mj0i5HBthqH1p_yeXzsg22gZduvgoNeA"),),
               note="the zip's sketch/ folder becomes imagenet-sketch/images/ (about 8 GB); no commit of the "
                    "Hugging Face repository is on record, so main is fetched and checked against the published hash"),
        imagenet_classnames("imagenet-sketch"),
    ),
    "imagenet_a": (
        Source(filename="imagenet-a.tar", dest="imagenet-adversarial",
               urls=("https://people.eecs.berkeley.edu/~hendrycks/imagenet-a.tar",),
               md5="c3e55429088dc681f30d81f4726b6595", size=687552512,
               sha256="3bb3632277e6ba6392ea64c02ddbf4dd2266c9caffd6bc09c9656d28f012589e",
               published=f"MD5: torch-uncertainty; size, SHA-256: {_TFDS}, datasets/imagenet_a/checksums.tsv",
               extract=True, provides="imagenet-adversarial/imagenet-a"),
        imagenet_classnames("imagenet-adversarial"),
    ),
    "imagenet_r": (
        Source(filename="imagenet-r.tar", dest="imagenet-rendition",
               urls=("https://people.eecs.berkeley.edu/~hendrycks/imagenet-r.tar",),
               md5="a61312130a589d0ca1a8fca1f2bd3337", size=2191079936,
               sha256="18c6bf493b39a0d975d48e587437f562caab9c52ae6327dcfa9dd8eb54aa1b52",
               published=f"MD5: torch-uncertainty; size, SHA-256: {_TFDS}, datasets/imagenet_r/checksums.tsv",
               extract=True, provides="imagenet-rendition/imagenet-r"),
        imagenet_classnames("imagenet-rendition"),
    ),
}


def _checks(source: Source) -> str:
    """The published size and hashes of a source, for a manual message."""
    parts = [f"{source.size:,} bytes"] if source.size else []
    parts += [f"{name} {value}" for name, value in (("md5", source.md5), ("sha256", source.sha256)) if value]
    return "  ".join(parts)


def _find(dataset: str, filename: str) -> Source:
    return next(s for s in SOURCES[dataset] if s.filename == filename)


# Manual steps, formatted with `root=` when shown ({root} is the data root).
IMAGENET_MANUAL = """ImageNet (ILSVRC-2012) must be downloaded by hand: its licence requires an account at
https://image-net.org (Download > ILSVRC 2012). Get ILSVRC2012_img_train.tar (138 GB,
md5 1d675b47d978889d74fa0da5fadfb00e) and ILSVRC2012_img_val.tar (6.3 GB,
md5 29b22e2961454d5413ddabcf34fc5622), then arrange them as CoOp expects:
  {root}/imagenet/images/train/<wnid>/*.JPEG   (1000 folders n01440764 ... n15075141)
  {root}/imagenet/images/val/<wnid>/*.JPEG     (the 50,000 val images sorted into the same 1000 folders,
                                                e.g. with torchvision.datasets.ImageNet's val parser,
                                                which also needs ILSVRC2012_devkit_t12.tar.gz)
Existing copies can be symlinked: ln -s /path/to/train {root}/imagenet/images/train
classnames.txt ("wnid name" per line, CLIP's names) is installed by `bmip download imagenet` from the
copy bundled with bmip."""

_CARS_TRAIN, _CARS_TEST = _find("stanford_cars", "cars_train.tgz"), _find("stanford_cars", "cars_test.tgz")
CARS_MANUAL = f"""Stanford Cars must be supplied by hand: its original host (ai.stanford.edu/~jkrause/car196/)
no longer serves the archives and no official mirror is known (pytorch/vision#7545, CoOp#61). Copies
circulate on dataset hubs (Kaggle among them) and in the issue threads of CoOp, MaPLe and
cross_modal_adaptation; check any copy against the published values before using it:
  cars_train.tgz  {_checks(_CARS_TRAIN)}
  cars_test.tgz   {_checks(_CARS_TEST)}
  (md5: torchvision <= 0.15; size and sha256: TensorFlow Datasets, url_checksums/cars196.txt)
Put them at {{root}}/{DOWNLOADS_DIR}/cars_train.tgz and {{root}}/{DOWNLOADS_DIR}/cars_test.tgz and rerun
`bmip download stanford_cars --root {{root}}`: they are verified against these values and extracted.
Or, with an extracted copy, make this layout (a symlink per folder is fine):
  {{root}}/stanford_cars/cars_train/00001.jpg ... 08144.jpg   (8,144 images)
  {{root}}/stanford_cars/cars_test/00001.jpg ... 08041.jpg    (8,041 images)
The common Kaggle copy is nested one level deeper (cars_train/cars_train/*.jpg); bmip refuses it
with the `mv` command that fixes it. split_zhou_StanfordCars.json is installed by bmip."""

_SUN = _find("sun397", "SUN397.tar.gz")
SUN397_MANUAL = f"""SUN397 must be supplied by hand: its original host (vision.princeton.edu/projects/2010/SUN/)
and the MIT CSAIL mirror answer 404 (pytorch/vision#9348, CoOp#90). Copies of the original archive
are kept by dataset hubs that mirror it (OpenDataLab is named in a 2026 issue thread), by other
research groups and in many clusters' shared dataset folders; a Kaggle "50/50" re-pack with train/
and test/ folders has another layout and cannot be used. Check a copy against the published values:
  SUN397.tar.gz  {_checks(_SUN)}
  (md5: torchvision sun397.py; size and sha256: TensorFlow Datasets, url_checksums/sun397.txt)
Put it at {{root}}/{DOWNLOADS_DIR}/SUN397.tar.gz and rerun `bmip download sun397 --root {{root}}`: it is
verified against these values (one read of the 39 GB file) and extracted (39 GB more while unpacking).
Or, with an extracted copy, make this layout (ln -s /path/to/SUN397 {{root}}/sun397/SUN397 is fine):
  {{root}}/sun397/SUN397/ClassName.txt
  {{root}}/sun397/SUN397/<letter>/<class>[/<subclass>]/sun_*.jpg   (e.g. a/abbey/, b/bakery/shop/;
                                                                 397 classes, 108,754 images)
split_zhou_SUN397.json is fetched by bmip."""
