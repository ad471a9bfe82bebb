"""The package's one C module, library/_folders.c; everything else is in pyproject.toml.

optional: where it cannot be built (no C compiler), the install goes on and the scanner lists
folders in Python instead, which is slower (library/folders.py).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "aniworld_addon.library._folders",
            sources=["aniworld_addon/library/_folders.c"],
            optional=True,
        )
    ]
)
