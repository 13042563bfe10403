"""Reading a configuration file's YAML: its data, the line of every key, and its duplicate keys.

Only ``loader.load_settings`` imports this module, when it reads a file, so the rest of the tool (and
settings built in code) never loads a YAML parser.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import yaml

from amplify_billing.errors import ConfigError

# A location inside the configuration: section, key, then list indexes.
KeyPath = tuple[str | int, ...]

# The schema is three levels deep (section, key, list item); the limit also stops at recursive aliases.
_DEEPEST = 3


@dataclass
class YamlDocument:
    data: object
    lines: dict[KeyPath, int] = field(default_factory=dict)
    # (where, line, problem): a key written twice, which safe_load would resolve silently to the last one
    duplicates: list[tuple[KeyPath, int, str]] = field(default_factory=list)


def read_yaml(text: str, name: str) -> YamlDocument:
    """Parse ``text`` (the file ``name``) once: compose the node tree, which has the marks, then construct the
    data from it exactly as ``yaml.safe_load`` would. A syntax error is a ``ConfigError`` at line and column."""
    loader: yaml.SafeLoader | None = None
    try:
        loader = yaml.SafeLoader(text)  # checks for unprintable characters already
        node = loader.get_single_node()
        data = None if node is None else loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        # PyYAML's own str() quotes the offending line, which may hold a secret: use only the mark.
        mark = exc.problem_mark or exc.context_mark
        where = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark is not None else name
        problem = exc.problem or exc.context or "it cannot be parsed"
        raise ConfigError(f"{where}: invalid YAML: {problem}; fix the syntax there") from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        raise ConfigError(
            f"{name}:{line}: invalid YAML: unacceptable character #x{exc.character:04x}; remove it"
        ) from None
    except yaml.YAMLError:
        raise ConfigError(f"{name}: invalid YAML; check the file's syntax") from None
    finally:
        if loader is not None:
            loader.dispose()
    document = YamlDocument(data)
    if node is not None:
        _record_lines(node, (), document, depth=0)
    return document


def _record_lines(node: yaml.Node, path: KeyPath, document: YamlDocument, *, depth: int) -> None:
    if depth > _DEEPEST:
        return
    if isinstance(node, yaml.MappingNode):
        first: dict[str, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in first:
                # the operator edited one of the two; say so next to whatever else is wrong
                problem = f"duplicate key (first on line {first[key]}); keep one"
                document.duplicates.append(((*path, key), line, problem))
            else:
                first[key] = line
            # the last one is the value safe_load keeps: a problem with the value is on its line
            document.lines[(*path, key)] = line
            _record_lines(value_node, (*path, key), document, depth=depth + 1)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            document.lines[(*path, index)] = item.start_mark.line + 1
            _record_lines(item, (*path, index), document, depth=depth + 1)
