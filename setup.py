"""geoglacier: glacier mapping from 5-band satellite rasters."""

from pathlib import Path

from setuptools import find_packages, setup

here = Path(__file__).parent
version = {}
exec((here / "geoglacier" / "_version.py").read_text(), version)

setup(
    name="geoglacier",
    version=version["__version__"],
    description="Map glaciers from 5-band satellite rasters with a U-Net++ (training, blended scene inference, true areas)",
    long_description=(here / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    # The click front end lives in the top-level cli/ folder but is installed as
    # geoglacier.cli: no top-level module named "cli" lands in site-packages.
    packages=[*find_packages(include=["geoglacier", "geoglacier.*"]), "geoglacier.cli"],
    package_dir={"geoglacier": "geoglacier", "geoglacier.cli": "cli"},
    install_requires=[
        "torch>=2.1,<=2.14.1",
        "torchvision>=0.16,<=0.29.1",
        "segmentation-models-pytorch>=0.3.3",
        "albumentations>=1.4,<3",
        "rasterio>=1.3",
        "rioxarray>=0.15",
        "xarray>=2023.1",
        "dask[array]>=2023.1",
        "distributed>=2023.1",
        "numpy>=1.24",
        "scikit-learn>=1.2",
        "click>=8.1",
        "tqdm>=4.60",
        "matplotlib>=3.6",
        "pyproj>=3.4",
        "shapely>=2.0",
        "fiona>=1.9",
        "pandas>=1.5",
        "scipy>=1.9",
        "pystac>=1.8",
    ],
    extras_require={
        # onnxruntime and OpenVINO are CPU wheels (no CUDA): the test extra has both so every
        # engine's tests run in CI.
        "test": [
            "pytest>=7",
            "pytest-timeout>=2.1",
            "hypothesis>=6.80",
            "psutil>=5.9",
            "monai>=1.3",
            "sphinx-click>=5.0",  # tests/test_docs.py renders the CLI reference as the docs do
            "onnx>=1.15",
            "onnxruntime>=1.17",
            "openvino>=2024.0",
        ],
        # Inference engines (segment-scene --engine onnxruntime / openvino, geoglacier export).
        "onnx": ["onnx>=1.15", "onnxruntime>=1.17"],
        "openvino": ["onnx>=1.15", "openvino>=2024.0"],
        # The docs site (make docs): Sphinx with Markdown pages, the CLI reference from the
        # click group and the API reference from the docstrings.
        "docs": ["sphinx>=7.2", "myst-parser>=2.0", "sphinx-click>=5.0", "furo>=2023.9.10"],
        "bench": ["monai>=1.3", "torchgeo>=0.5", "requests", "psutil>=5.9", "exactextract>=0.2"],
    },
    entry_points={"console_scripts": ["geoglacier=geoglacier.cli.main:main"]},
)
