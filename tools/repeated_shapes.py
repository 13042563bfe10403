"""Find repeated logic: two places sharing six or more lines of the same shape (issue 12, "measurable shape").

Standard library only (CI has none of the developer tools). Each module is read with ``tokenize`` and ``ast``. A
line's *shape* is its tokens with every name, string and number replaced by a placeholder. Within a window of six
lines the placeholders are numbered by first appearance, so two windows match only when one is the other with its
names and values *consistently* renamed: ``if have.name != want.name`` matches ``if old.code != new.code`` but not
``if a.b != c.d``. That keeps chance likenesses of short lines out without a list of idioms.

What states no logic is left out before windows are formed, and a window that is a table is not compared; each
rule in ``_not_logic``, ``_is_logic`` and ``_is_table`` says why. The result is one ``Repeat`` per pair of scopes
(function, class or module) that share a run, longest first.
"""

from __future__ import annotations

import ast
import io
import keyword
import tokenize
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

MIN_LINES = 6
_LAYOUT = {
    tokenize.ENCODING,
    tokenize.NL,
    tokenize.NEWLINE,
    tokenize.COMMENT,
    tokenize.INDENT,
    tokenize.DEDENT,
    tokenize.ENDMARKER,
}
# Python 3.12 splits an f-string into parts; here it is one string, as on 3.11
_FSTRING_START = getattr(tokenize, "FSTRING_START", None)
_FSTRING_END = getattr(tokenize, "FSTRING_END", None)
_VALUE_WORDS = {"None", "True", "False"}
_OPENING, _CLOSING = {"(", "[", "{"}, {")", "]", "}"}
_NAME, _STRING, _NUMBER = "N\0", "S\0", "0\0"  # placeholder kinds; the text each stands for follows the kind


@dataclass(frozen=True)
class Place:
    path: str
    start: int
    end: int
    scope: str  # the innermost function or class around the first line, "<module>" at the top level

    def __str__(self) -> str:
        return f"{self.path}:{self.start}-{self.end} ({self.scope})"


@dataclass(frozen=True)
class Repeat:
    """Two places sharing ``lines`` lines of one shape; ``more`` other runs are shared by the same two scopes."""

    lines: int
    first: Place
    second: Place
    more: int = 0

    @property
    def scopes(self) -> frozenset[str]:
        """The pair as ``path::scope`` names, without line numbers, so it stays the same while code moves."""
        return frozenset({f"{self.first.path}::{self.first.scope}", f"{self.second.path}::{self.second.scope}"})

    def __str__(self) -> str:
        more = f" (+{self.more} more runs)" if self.more else ""
        return f"{self.lines} lines: {self.first} ~ {self.second}{more}"


@dataclass(frozen=True)
class _Line:
    row: int
    indent: int
    tokens: tuple[str, ...]  # keywords and operators as written, names and values as placeholder kind + text

    def shape(self, numbers: dict[str, int]) -> str:
        """The tokens with each name or value replaced by its kind and its number of first appearance."""
        return " ".join(t if "\0" not in t else t[0] + str(numbers.setdefault(t, len(numbers))) for t in self.tokens)

    def bare_shape(self) -> str:
        return " ".join(t[0] if "\0" in t else t for t in self.tokens)

    def callee(self) -> str | None:
        """The function this line calls, when the line is one whole call (``api("GET", path, handler)``)."""
        if "(" not in self.tokens or self.tokens[-1] != ")":
            return None
        opening = self.tokens.index("(")
        name = self.tokens[:opening]
        if not name or not all(t.startswith(_NAME) or t == "." for t in name):
            return None
        depth = 0
        for position, token in enumerate(self.tokens[opening:], start=opening):
            depth += (token in _OPENING) - (token in _CLOSING)
            if depth == 0 and position != len(self.tokens) - 1:
                return None  # the call closes before the line ends: `f(a)(b)`, `f(a) + g(b)`
        return "".join(t.removeprefix(_NAME) for t in name)


def find_repeats(sources: Mapping[str, str], min_lines: int = MIN_LINES) -> list[Repeat]:
    """Every pair of scopes in ``sources`` (path → Python source) sharing ``min_lines`` or more lines of a shape."""
    trees = {path: ast.parse(text) for path, text in sorted(sources.items())}
    lines = {path: _lines(sources[path], trees[path]) for path in trees}
    scopes = {path: _scopes(tree) for path, tree in trees.items()}

    def place(path: str, start: int, end: int) -> Place:
        row = lines[path][start].row
        return Place(path, row, lines[path][end].row, scopes[path].get(row, "<module>"))

    by_scopes: dict[frozenset[str], list[Repeat]] = defaultdict(list)
    for (path_a, path_b, offset), starts in _shared_windows(lines, min_lines).items():
        for first, last in _consecutive(sorted(starts)):
            end = last + min_lines - 1
            repeat = Repeat(end - first + 1, place(path_a, first, end), place(path_b, first + offset, end + offset))
            by_scopes[repeat.scopes].append(repeat)
    repeats = []
    for same in by_scopes.values():
        longest = max(same, key=lambda r: (r.lines, -r.first.start))
        repeats.append(Repeat(longest.lines, longest.first, longest.second, more=len(same) - 1))
    return sorted(repeats, key=lambda r: (-r.lines, str(r)))


def _shared_windows(lines: Mapping[str, list[_Line]], size: int) -> dict[tuple[str, str, int], list[int]]:
    """(path a, path b, how far b's window starts after a's) → where a's windows of that pairing start."""
    index: dict[tuple[tuple[int, str], ...], list[tuple[str, int]]] = defaultdict(list)
    for path, found in lines.items():
        for i in range(len(found) - size + 1):
            window = found[i : i + size]
            if _is_table(window):
                continue
            numbers: dict[str, int] = {}
            index[tuple((line.indent - window[0].indent, line.shape(numbers)) for line in window)].append((path, i))
    # places are indexed in path order, then line order, so a's window always comes before b's
    shared: dict[tuple[str, str, int], list[int]] = defaultdict(list)
    for places in index.values():
        for n, (path_a, i_a) in enumerate(places):
            for path_b, i_b in places[n + 1 :]:
                # a window matching itself a few lines on is one run of alike lines, not two places
                if path_a != path_b or i_b - i_a >= size:
                    shared[(path_a, path_b, i_b - i_a)].append(i_a)
    return shared


def _is_table(window: list[_Line]) -> bool:
    """Alike lines in a row (the entries of a dict, the keyword arguments of a call) or calls of one function in a
    row (a route table, registrations) are a table, and a table repeats its shape by design; a window that reaches
    past the table is still compared."""
    if len({line.bare_shape() for line in window}) == 1:
        return True
    callees = {line.callee() for line in window}
    return len(callees) == 1 and None not in callees


def _consecutive(starts: list[int]) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    for start in starts:
        if spans and spans[-1][1] == start - 1:
            spans[-1] = (spans[-1][0], start)
        else:
            spans.append((start, start))
    return spans


def _lines(text: str, tree: ast.Module) -> list[_Line]:
    skip = _not_logic(tree)
    rows: dict[int, list[str]] = defaultdict(list)
    indents: dict[int, int] = {}
    fstring: list[str] = []  # the parts of the f-string being read (3.12+)
    depth = 0
    row = 0
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type in _LAYOUT:
            continue
        if depth == 0:
            row = token.start[0]
            indents.setdefault(row, token.start[1])
        if _FSTRING_START is not None and token.type == _FSTRING_START:
            depth += 1
        if depth:
            fstring.append(token.string)
            if token.type == _FSTRING_END:
                depth -= 1
                if depth == 0:
                    rows[row].append(_STRING + "".join(fstring))
                    fstring = []
            continue
        rows[row].append(_normal(token))
    kept = sorted((row, tokens) for row, tokens in rows.items() if row not in skip and _is_logic(tokens))
    return [_Line(row, indents[row], tuple(tokens)) for row, tokens in kept]


def _normal(token: tokenize.TokenInfo) -> str:
    if token.type == tokenize.NAME:
        return token.string if keyword.iskeyword(token.string) else _NAME + token.string
    if token.type == tokenize.STRING:
        return _STRING + token.string
    if token.type == tokenize.NUMBER:
        return _NUMBER + token.string
    return token.string


def _is_logic(tokens: list[str]) -> bool:
    """A row with no name and no keyword but None/True/False is a closing bracket (layout) or a row of literals in a
    table of values (data). A keyword argument handing on a value under its own name (``phase=phase,``) is plumbing:
    two functions passing their parameters on alike decide nothing alike."""
    if tokens[-1:] == [","]:
        tokens = tokens[:-1]
    if len(tokens) == 3 and tokens[1] == "=" and tokens[0] == tokens[2] and tokens[0].startswith(_NAME):
        return False
    return any(t.startswith(_NAME) or (keyword.iskeyword(t) and t not in _VALUE_WORDS) for t in tokens)


def _not_logic(tree: ast.Module) -> set[int]:
    """The rows that state no logic, left out before windows are formed."""
    rows: set[int] = set()

    def span(node: ast.expr | ast.stmt | ast.arg) -> None:
        rows.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))

    for node in ast.walk(tree):
        # imports list the names a module needs; two modules needing the same names share no logic
        if isinstance(node, ast.Import | ast.ImportFrom):
            span(node)
        if isinstance(node, ast.Module | ast.ClassDef):
            # a field or a name bound to a literal declares a value (docstrings are prose); a class made only of
            # them (a dataclass, an enum) declares a kind of value, decorators and header included: two records
            # with alike fields are two kinds of value, not one job done twice
            declarations = [s for s in node.body if _declares(s)]
            for statement in declarations:
                span(statement)
            if isinstance(node, ast.ClassDef) and len(declarations) == len(node.body):
                rows.update(range(min([node.lineno, *(d.lineno for d in node.decorator_list)]), node.lineno + 1))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            body = node.body[0]
            if isinstance(body, ast.Expr) and isinstance(body.value, ast.Constant):
                span(body)  # a docstring is prose
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            # a signature (decorators, name, parameters, return type) declares, and a Protocol restates its
            # implementer's by design; the bodies are what is compared
            start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            rows.update(range(start, max(node.body[0].lineno, node.lineno + 1)))
    return rows


def _declares(statement: ast.stmt) -> bool:
    """A docstring, a field, ``pass``, ``...``, or a name bound to a literal (a constant, or a tuple, list, set or
    dict of them)."""
    if isinstance(statement, ast.AnnAssign | ast.Pass):
        return True
    if isinstance(statement, ast.Expr):
        return isinstance(statement.value, ast.Constant)
    if isinstance(statement, ast.Assign):
        try:
            ast.literal_eval(statement.value)
        except (ValueError, TypeError):  # not a literal; or one Python cannot build (a list as a dict key)
            return False
        return True
    return False


def _scopes(tree: ast.Module) -> dict[int, str]:
    """Row → the qualified name of the innermost function or class around it (decorators included)."""
    found: dict[int, str] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = prefix + child.name
                start = min([child.lineno, *(d.lineno for d in child.decorator_list)])
                for row in range(start, (child.end_lineno or child.lineno) + 1):
                    found[row] = name
                visit(child, name + ".")
            else:
                visit(child, prefix)

    visit(tree, "")
    return found
