"""SCIM filters (RFC 7644 3.4.2.2) as SQL: ``scim2-filter-parser`` reads the grammar,
this module turns its tree into a SQLAlchemy condition on the columns the caller names
(values are always bound parameters; no text from the filter reaches the SQL).

The library gives ``and`` and ``or`` the same precedence; RFC 7644 binds ``and``
tighter, so an unparenthesised chain is regrouped here (``a or b and c`` is
``a or (b and c)``).
"""

from __future__ import annotations

import enum
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from scim2_filter_parser import ast
from scim2_filter_parser.lexer import SCIMLexer
from scim2_filter_parser.parser import SCIMParser
from scim2_models import InvalidFilterException
from sqlalchemy import ColumnElement, and_, not_, or_

from federation.scim.schema import CORE_USER

MAX_FILTER_LENGTH = 2000
MAX_TERMS = 50


class Kind(enum.Enum):
    FOLDED = "folded"  # stored NFKC + casefold (userName): compared the same way
    LOWER = "lower"  # stored lower case (emails.value)
    EXACT = "exact"  # caseExact strings (id, externalId)
    TIME = "time"  # dateTime
    BOOLEAN = "boolean"


@dataclass(frozen=True)
class Attribute:
    column: Any
    kind: Kind
    # a boolean column stored as an enum or a string: (true value, false value)
    values: tuple[Any, Any] = (True, False)


def parse(text: str) -> ast.Filter:
    if len(text) > MAX_FILTER_LENGTH:
        raise InvalidFilterException(detail="The filter is too long.")
    if "\x00" in text:
        raise InvalidFilterException(detail="The filter holds a NUL character.")
    try:
        tree = SCIMParser().parse(SCIMLexer().tokenize(text))
    except Exception:  # noqa: BLE001 - the library raises ValueError, its own error or others
        raise InvalidFilterException(detail="The filter is not valid SCIM filter syntax.") from None
    if not isinstance(tree, ast.Filter):
        raise InvalidFilterException(detail="The filter is not valid SCIM filter syntax.")
    return tree


def condition(text: str, attributes: dict[str, Attribute]) -> ColumnElement[bool]:
    """The SQL condition for the filter ``text``; ``attributes`` maps lower-case
    attribute paths (``username``, ``emails.value``, ``meta.lastmodified``) to
    columns. Anything else is an ``invalidFilter`` error."""
    return _Translator(attributes).filter(parse(text), None)


class _Translator:
    def __init__(self, attributes: dict[str, Attribute]) -> None:
        self._attributes = attributes
        self._terms = 0

    def filter(self, node: Any, namespace: str | None) -> ColumnElement[bool]:
        if isinstance(node, ast.Filter):
            if node.namespace is not None:
                if namespace is not None:
                    raise InvalidFilterException(detail="Value filters cannot be nested.")
                inner = self.filter(node.expr, self._path(node.namespace, None))
            else:
                inner = self.filter(node.expr, namespace)
            return not_(inner) if node.negated else inner
        if isinstance(node, ast.LogExpr):
            return self._logical(node, namespace)
        if isinstance(node, ast.AttrExpr):
            return self._compare(node, namespace)
        raise InvalidFilterException(detail="The filter is not valid SCIM filter syntax.")

    def _logical(self, node: ast.LogExpr, namespace: str | None) -> ColumnElement[bool]:
        # the chain a op b op c ... as the parser left it (left-associative), regrouped
        # so that "and" binds tighter than "or"
        operands: list[Any] = [node.expr2]
        operators: list[str] = [str(node.op).lower()]
        left: Any = node.expr1
        while (
            isinstance(left, ast.Filter)
            and left.namespace is None
            and not left.negated
            and isinstance(left.expr, ast.LogExpr)
        ):
            operands.append(left.expr.expr2)
            operators.append(str(left.expr.op).lower())
            left = left.expr.expr1
        operands.append(left)
        operands.reverse()
        operators.reverse()
        groups: list[list[ColumnElement[bool]]] = [[self.filter(operands[0], namespace)]]
        for operator, operand in zip(operators, operands[1:], strict=True):
            term = self.filter(operand, namespace)
            if operator == "and":
                groups[-1].append(term)
            else:
                groups.append([term])
        return or_(*(and_(*group) for group in groups))

    def _path(self, path: Any, namespace: str | None) -> str:
        if not isinstance(path, ast.AttrPath) or not isinstance(path.attr_name, str):
            raise InvalidFilterException(detail="This attribute path cannot be filtered on.")
        if path.uri is not None and str(path.uri).lower() != CORE_USER.lower():
            raise InvalidFilterException(detail="Only core User attributes can be filtered on.")
        name = path.attr_name
        if path.sub_attr is not None:
            name += "." + str(path.sub_attr.value)
        if namespace is not None:
            name = namespace + "." + name
        return name.lower()

    def _compare(self, node: ast.AttrExpr, namespace: str | None) -> ColumnElement[bool]:
        self._terms += 1
        if self._terms > MAX_TERMS:
            raise InvalidFilterException(detail="The filter has too many terms.")
        name = self._path(node.attr_path, namespace)
        attribute = self._attributes.get(name)
        if attribute is None:
            raise InvalidFilterException(detail=f"The attribute {name!r} cannot be filtered on.")
        operator = str(node.value).lower()
        column = attribute.column
        if operator == "pr":
            present = column.is_not(None)
            if attribute.kind in {Kind.FOLDED, Kind.LOWER, Kind.EXACT}:
                present = and_(present, column != "")
            return present  # type: ignore[no-any-return]
        raw = "" if node.comp_value is None else str(node.comp_value.value)
        value = _value(attribute, raw, operator)
        if operator == "eq":
            return _equal(column, value)
        if operator == "ne":
            return or_(column.is_(None), not_(_equal(column, value)))
        if operator in {"co", "sw", "ew"}:
            if attribute.kind in {Kind.TIME, Kind.BOOLEAN}:
                raise InvalidFilterException(
                    detail=f"The operator {operator!r} applies to strings only."
                )
            method = {"co": column.contains, "sw": column.startswith, "ew": column.endswith}
            return method[operator](value, autoescape=True)  # type: ignore[no-any-return]
        if operator in {"gt", "ge", "lt", "le"}:
            if attribute.kind is Kind.BOOLEAN:
                raise InvalidFilterException(
                    detail=f"The operator {operator!r} does not apply to booleans."
                )
            compare = {
                "gt": column.__gt__,
                "ge": column.__ge__,
                "lt": column.__lt__,
                "le": column.__le__,
            }
            return compare[operator](value)  # type: ignore[no-any-return]
        raise InvalidFilterException(detail=f"Unknown operator {operator!r}.")


def _equal(column: Any, value: Any) -> ColumnElement[bool]:
    if value is None:
        return column.is_(None)  # type: ignore[no-any-return]
    return column == value  # type: ignore[no-any-return]


def _value(attribute: Attribute, raw: str, operator: str) -> Any:
    if attribute.kind is Kind.BOOLEAN:
        if operator not in {"eq", "ne"} or raw.lower() not in {"true", "false"}:
            raise InvalidFilterException(detail="Compare a boolean with eq true or eq false.")
        return attribute.values[0] if raw.lower() == "true" else attribute.values[1]
    if attribute.kind is Kind.TIME:
        try:
            moment = datetime.fromisoformat(raw)
        except ValueError:
            raise InvalidFilterException(
                detail="Give a dateTime such as 2026-12-03T08:00:00Z."
            ) from None
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    if attribute.kind is Kind.FOLDED:
        return unicodedata.normalize("NFKC", raw).strip().casefold()
    if attribute.kind is Kind.LOWER:
        return raw.strip().lower()
    return raw
