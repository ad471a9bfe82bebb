from os import PathLike

def list_folder(
    path: str | PathLike[str], *, follow_symlinks: bool = False
) -> tuple[tuple[int, int, int, int, int], list[str], list[str], list[str]]: ...
def list_folders(
    paths: list[str],
) -> list[tuple[tuple[int, int, int, int, int], list[str], list[str], list[str]] | OSError]: ...
def stat_paths(
    paths: list[str], *, follow_symlinks: bool = False
) -> list[tuple[int, int, int, int, int] | OSError]: ...
