"""Read an experiment YAML file with bounds: a regular file of modest size, no duplicate keys,
and no aliases that expand into a huge or endless structure ("billion laughs").

PyYAML's safe loader shares the object an alias points to, so loading itself stays small; but
everything that later walks the config (type checks, MLflow params, JSON dumps) would expand each
alias again. So the expanded size is measured on the composed node graph, before any Python
object is built, and refused past a bound that no hand-written experiment comes near.
"""

from pathlib import Path

import yaml
from yaml.nodes import MappingNode, ScalarNode, SequenceNode

from newstag.data.files import read_capped
from newstag.errors import NewstagError

MAX_YAML_BYTES = 1 << 20
MAX_EXPANDED_NODES = 100_000
MERGE_TAG = "tag:yaml.org,2002:merge"


def load_yaml(path: str | Path):
    """The parsed content of a YAML file; NewstagError naming the file for anything unsafe or invalid."""
    path = Path(path)
    text = _read_regular_file(path, MAX_YAML_BYTES)
    loader = _BoundedLoader(text)
    loader.name = str(path)  # for the line numbers in messages
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expanded_size(node, path)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise NewstagError(_syntax_error(path, exc)) from None
    except RecursionError:
        raise NewstagError(f"{path}: nested too deeply to be an experiment file") from None
    finally:
        loader.dispose()


def _read_regular_file(path: Path, limit: int) -> str:
    """The file's text, read through the bounded reader (a named pipe must not hang us)."""
    try:
        data = read_capped(path, limit, "experiment file", "; an experiment file is a few lines of YAML")
    except FileNotFoundError:
        raise NewstagError(f"{path}: experiment file not found; see experiments/ for examples") from None
    except OSError as exc:
        raise NewstagError(f"{path}: cannot open the experiment file ({exc.strerror})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NewstagError(f"{path}: not valid YAML (not UTF-8 at byte {exc.start})") from None


class _BoundedLoader(yaml.SafeLoader):
    """A SafeLoader that refuses a mapping holding the same key twice (YAML would keep the last)."""

    def compose_mapping_node(self, anchor):
        node = super().compose_mapping_node(anchor)
        seen = {}
        for key, _value in node.value:
            if not isinstance(key, ScalarNode) or key.tag == MERGE_TAG:
                continue
            if (key.tag, key.value) in seen:
                raise NewstagError(f"{self.name}: line {key.start_mark.line + 1}: duplicate key "
                                   f"{key.value!r} (first on line {seen[key.tag, key.value]}); "
                                   f"keep only one")
            seen[key.tag, key.value] = key.start_mark.line + 1
        return node


def _check_expanded_size(root, path: Path) -> None:
    """Refuse a node graph whose aliases expand past MAX_EXPANDED_NODES or refer to themselves."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_nodes:
            raise NewstagError(f"{path}: line {node.start_mark.line + 1}: an alias refers to the "
                               f"value that contains it; write the values out")
        open_nodes.add(key)
        children = node.value if isinstance(node, SequenceNode) else \
            [item for pair in node.value for item in pair] if isinstance(node, MappingNode) else []
        sizes[key] = 1 + sum(size(child) for child in children)
        open_nodes.discard(key)
        return sizes[key]

    if size(root) > MAX_EXPANDED_NODES:
        raise NewstagError(f"{path}: aliases (*name) expand to more than {MAX_EXPANDED_NODES} values; "
                           f"write the values out instead")


def _syntax_error(path: Path, exc: yaml.YAMLError) -> str:
    """Where the parser stopped and why: PyYAML's first line ("while scanning for the next
    token") names neither, so the line, column and problem come from its marks."""
    mark, problem = getattr(exc, "problem_mark", None), getattr(exc, "problem", None)
    if mark is None or not problem:
        return f"{path}: not valid YAML ({_first_line(exc)})"
    context, start = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context and start is not None and start.line != mark.line:
        problem += f" ({context} from line {start.line + 1})"
    if "'\\t'" in problem:  # a tab where YAML wants indentation
        problem += "; indent with spaces"
    return f"{path} line {mark.line + 1}, column {mark.column + 1}: not valid YAML: {problem}"


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
