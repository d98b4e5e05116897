"""Procedural bug injection: small, seeded libcst rewrites confined to one function or class.
Everything outside the mutated site is reproduced byte-for-byte, so the diff is the bug."""

from __future__ import annotations

import difflib
import functools
import random
from dataclasses import dataclass

import libcst as cst
from libcst.metadata import MetadataWrapper, PositionProvider

_COMPLEXITY_NODES = (
    cst.If,
    cst.For,
    cst.While,
    cst.Try,
    cst.TryStar,
    cst.With,
    cst.BooleanOperation,
    cst.ListComp,
    cst.SetComp,
    cst.DictComp,
    cst.GeneratorExp,
    cst.IfExp,
)


@dataclass(frozen=True)
class Entity:
    qualname: str
    start_line: int
    end_line: int
    complexity: int
    is_method: bool

    @property
    def class_qualname(self) -> str | None:
        return self.qualname.rsplit(".", 1)[0] if self.is_method else None


class _ComplexityCounter(cst.CSTVisitor):
    def __init__(self) -> None:
        self.count = 1

    def on_visit(self, node: cst.CSTNode) -> bool:
        if isinstance(node, _COMPLEXITY_NODES):
            self.count += 1
        return True


class _EntityFinder(cst.CSTVisitor):
    METADATA_DEPENDENCIES = (PositionProvider,)

    def __init__(self) -> None:
        self.scope: list[cst.CSTNode] = []
        self.entities: list[Entity] = []

    def visit_ClassDef(self, node: cst.ClassDef) -> None:
        self.scope.append(node)

    def leave_ClassDef(self, original_node: cst.ClassDef) -> None:
        self.scope.pop()

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        pos = self.get_metadata(PositionProvider, node)
        counter = _ComplexityCounter()
        node.body.visit(counter)
        names = [n.name.value for n in self.scope] + [node.name.value]
        is_method = bool(self.scope) and isinstance(self.scope[-1], cst.ClassDef)
        self.entities.append(Entity(".".join(names), pos.start.line, pos.end.line, counter.count, is_method))
        self.scope.append(node)

    def leave_FunctionDef(self, original_node: cst.FunctionDef) -> None:
        self.scope.pop()


def find_entities(source: str) -> list[Entity]:
    """Every function and method in `source`, in source order."""
    finder = _EntityFinder()
    MetadataWrapper(cst.parse_module(source)).visit(finder)
    return finder.entities


def is_valid_python(source: str) -> bool:
    try:
        compile(source, "<x>", "exec")
    except (SyntaxError, ValueError):
        return False
    return True


def _paren(node: cst.BaseExpression) -> cst.BaseExpression:
    # Needed whenever a compound expression moves into a tighter-binding position.
    atomic = (cst.Name, cst.Attribute, cst.Call, cst.Subscript, cst.Integer, cst.Float, cst.SimpleString)
    if isinstance(node, atomic) or node.lpar:
        return node
    return node.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()])


def _spaced(op: type) -> cst.CSTNode:
    return op(whitespace_before=cst.SimpleWhitespace(" "), whitespace_after=cst.SimpleWhitespace(" "))


def _shift(expr: cst.BaseExpression, delta: int) -> cst.BaseExpression:
    """`expr` moved by +-1: literals are edited in place, anything else gets `+ 1` / `- 1`."""
    if isinstance(expr, cst.Integer):
        value = int(expr.value, 0) + delta
        if value >= 0:
            return expr.with_changes(value=str(value))
    if (
        isinstance(expr, cst.UnaryOperation)
        and isinstance(expr.operator, cst.Minus)
        and isinstance(expr.expression, cst.Integer)
        and not expr.lpar
    ):
        value = -int(expr.expression.value, 0) + delta
        if value >= 0:
            return cst.Integer(str(value))
        return expr.with_changes(expression=cst.Integer(str(-value)))
    if (
        isinstance(expr, cst.BinaryOperation)
        and isinstance(expr.operator, cst.Add | cst.Subtract)
        and isinstance(expr.right, cst.Integer)
        and not expr.lpar
    ):
        # Fold into an existing `+ k` / `- k` so `n + 1` becomes `n` or `n + 2`, as a human would write it.
        sign = 1 if isinstance(expr.operator, cst.Add) else -1
        folded = sign * int(expr.right.value, 0) + delta
        if folded == 0:
            return expr.left
        op = expr.operator
        new_op = (cst.Add if folded > 0 else cst.Subtract)(
            whitespace_before=op.whitespace_before, whitespace_after=op.whitespace_after
        )
        return expr.with_changes(operator=new_op, right=cst.Integer(str(abs(folded))))
    op = cst.Add if delta > 0 else cst.Subtract
    # Arithmetic binds at least as tightly as `+`/`-`, so only looser operands need parentheses.
    tight = isinstance(expr, cst.BinaryOperation) and isinstance(expr.operator, _ARITH_OPS)
    left = expr if tight else _paren(expr)
    return cst.BinaryOperation(left=left, operator=_spaced(op), right=cst.Integer(str(abs(delta))))


_ARITH_OPS = (
    cst.Add,
    cst.Subtract,
    cst.Multiply,
    cst.Divide,
    cst.FloorDivide,
    cst.Modulo,
    cst.Power,
    cst.MatrixMultiply,
)


def _negate(expr: cst.BaseExpression) -> cst.BaseExpression:
    if isinstance(expr, cst.UnaryOperation) and isinstance(expr.operator, cst.Not):
        return expr.expression
    return cst.UnaryOperation(operator=cst.Not(), expression=_paren(expr))


@functools.lru_cache(maxsize=32)
def _parsed(source: str) -> MetadataWrapper:
    # Parsing and position metadata dominate a mutation's cost; trees are immutable, so one
    # parse serves every modifier and entity of a file.
    return MetadataWrapper(cst.parse_module(source))


class Modifier:
    """One kind of bug. Subclasses name the node types they touch, how many sites a node offers,
    and how to rewrite one site; the base class handles scoping and seeded site choice."""

    name: str = ""
    family: str = ""
    scope: str = "function"  # "class": acts on the class enclosing a method entity
    node_types: tuple[type, ...] = ()
    skip_elif: bool = False

    def sites(self, node: cst.CSTNode) -> int:
        return 1

    def rewrite(self, node: cst.CSTNode, index: int, rng: random.Random):
        raise NotImplementedError

    def applies_to(self, entity: Entity) -> bool:
        return self.scope == "function" or entity.is_method

    def _run(self, source: str, entity: Entity, target: int | None, rng: random.Random):
        transformer = _SiteTransformer(self, entity, target, rng)
        module = _parsed(source).visit(transformer)
        return transformer.count, module.code

    def candidates(self, source: str, entity: Entity) -> int:
        if not self.applies_to(entity):
            return 0
        return self._run(source, entity, None, random.Random(0))[0]

    def apply(self, source: str, entity: Entity, rng: random.Random) -> str | None:
        count = self.candidates(source, entity)
        if count == 0:
            return None
        return self._run(source, entity, rng.randrange(count), rng)[1]


class _SiteTransformer(cst.CSTTransformer):
    """Numbers the modifier's sites inside the target region in traversal order and
    rewrites only the chosen one, so site choice is reproducible from the rng alone."""

    METADATA_DEPENDENCIES = (PositionProvider,)

    def __init__(self, modifier: Modifier, entity: Entity, target: int | None, rng: random.Random):
        super().__init__()
        self.modifier, self.entity, self.target, self.rng = modifier, entity, target, rng
        self.count = 0
        self._names: list[str] = []
        self._root: cst.CSTNode | None = None
        self._inside = False
        self._annotation = 0
        self._elifs: set[int] = set()

    def _is_target(self, node: cst.CSTNode) -> bool:
        qualname = ".".join(self._names)
        pos = self.get_metadata(PositionProvider, node)
        if self.modifier.scope == "class":
            return (
                isinstance(node, cst.ClassDef)
                and qualname == self.entity.class_qualname
                and pos.start.line <= self.entity.start_line <= pos.end.line
            )
        return (
            isinstance(node, cst.FunctionDef)
            and qualname == self.entity.qualname
            and pos.start.line == self.entity.start_line
        )

    def on_visit(self, node: cst.CSTNode) -> bool:
        if isinstance(node, cst.FunctionDef | cst.ClassDef):
            self._names.append(node.name.value)
            pos = self.get_metadata(PositionProvider, node)
            if pos.end.line < self.entity.start_line or pos.start.line > self.entity.end_line:
                return False  # cannot contain the target: skip the subtree (on_leave still runs)
            if self._root is None and self._is_target(node):
                # Function modifiers get the body only: signature defaults stay intact.
                self._root = node.body if isinstance(node, cst.FunctionDef) else node
        if node is self._root:
            self._inside = True
        if isinstance(node, cst.Annotation):
            self._annotation += 1
        if isinstance(node, cst.If) and isinstance(node.orelse, cst.If):
            self._elifs.add(id(node.orelse))
        return True

    def on_leave(self, original_node: cst.CSTNode, updated_node: cst.CSTNode):
        result = updated_node
        m = self.modifier
        if (
            self._inside
            and not self._annotation
            and isinstance(original_node, m.node_types)
            and not (m.skip_elif and id(original_node) in self._elifs)
        ):
            n = m.sites(original_node)
            if self.target is not None and self.count <= self.target < self.count + n:
                result = m.rewrite(updated_node, self.target - self.count, self.rng)
            self.count += n
        if isinstance(original_node, cst.Annotation):
            self._annotation -= 1
        if original_node is self._root:
            self._inside = False
        if isinstance(original_node, cst.FunctionDef | cst.ClassDef):
            self._names.pop()
        return result


# --- operator change -------------------------------------------------------------------------

_ARITH_SWAP = {
    cst.Add: cst.Subtract,
    cst.Subtract: cst.Add,
    cst.Multiply: cst.FloorDivide,
    cst.FloorDivide: cst.Multiply,
    cst.Divide: cst.Multiply,
    cst.Modulo: cst.FloorDivide,
}

_COMPARE_SWAP = {
    cst.LessThan: cst.LessThanEqual,
    cst.LessThanEqual: cst.LessThan,
    cst.GreaterThan: cst.GreaterThanEqual,
    cst.GreaterThanEqual: cst.GreaterThan,
    cst.Equal: cst.NotEqual,
    cst.NotEqual: cst.Equal,
    cst.In: cst.NotIn,
    cst.NotIn: cst.In,
    cst.Is: cst.IsNot,
    cst.IsNot: cst.Is,
}


def _swap_op(op: cst.CSTNode, table: dict) -> cst.CSTNode:
    # Reuse the original spacing so `a+b` stays tight and `a + b` stays spaced.
    return table[type(op)](whitespace_before=op.whitespace_before, whitespace_after=op.whitespace_after)


class ArithmeticOperatorChange(Modifier):
    name, family = "op_change_arith", "operator_change"
    node_types = (cst.BinaryOperation,)

    def sites(self, node):
        return int(type(node.operator) in _ARITH_SWAP)

    def rewrite(self, node, index, rng):
        return node.with_changes(operator=_swap_op(node.operator, _ARITH_SWAP))


class ComparisonOperatorChange(Modifier):
    name, family = "op_change_compare", "operator_change"
    node_types = (cst.Comparison,)

    def sites(self, node):
        return len(node.comparisons)

    def rewrite(self, node, index, rng):
        targets = list(node.comparisons)
        target = targets[index]
        targets[index] = target.with_changes(operator=_swap_op(target.operator, _COMPARE_SWAP))
        return node.with_changes(comparisons=targets)


# --- operand swap ----------------------------------------------------------------------------

_NON_COMMUTATIVE = (
    cst.Subtract,
    cst.Divide,
    cst.FloorDivide,
    cst.Modulo,
    cst.Power,
    cst.LeftShift,
    cst.RightShift,
)
_ORDERING = (cst.LessThan, cst.LessThanEqual, cst.GreaterThan, cst.GreaterThanEqual)


class SwapOperands(Modifier):
    name, family = "op_swap_operands", "operator_swap"
    node_types = (cst.BinaryOperation, cst.Comparison)

    def sites(self, node):
        if isinstance(node, cst.BinaryOperation):
            return int(isinstance(node.operator, _NON_COMMUTATIVE))
        # Chained comparisons have no single pair to swap.
        return int(len(node.comparisons) == 1 and isinstance(node.comparisons[0].operator, _ORDERING))

    def rewrite(self, node, index, rng):
        if isinstance(node, cst.BinaryOperation):
            return node.with_changes(left=_paren(node.right), right=_paren(node.left))
        target = node.comparisons[0]
        return node.with_changes(
            left=_paren(target.comparator), comparisons=[target.with_changes(comparator=_paren(node.left))]
        )


# --- constants -------------------------------------------------------------------------------


class IntegerConstantChange(Modifier):
    name, family = "constant_int", "constant_change"
    node_types = (cst.Integer,)

    def rewrite(self, node, index, rng):
        value = int(node.value, 0)
        delta = 1 if value == 0 else rng.choice((-1, 1))
        return node.with_changes(value=str(value + delta))


class BoolConstantFlip(Modifier):
    name, family = "constant_bool", "constant_change"
    node_types = (cst.Name,)

    def sites(self, node):
        return int(node.value in ("True", "False"))

    def rewrite(self, node, index, rng):
        return node.with_changes(value="False" if node.value == "True" else "True")


# --- boolean chains --------------------------------------------------------------------------


class SwapAndOr(Modifier):
    name, family = "bool_swap_and_or", "boolean_chain"
    node_types = (cst.BooleanOperation,)

    def rewrite(self, node, index, rng):
        op = node.operator
        new = cst.Or if isinstance(op, cst.And) else cst.And
        return node.with_changes(
            operator=new(whitespace_before=op.whitespace_before, whitespace_after=op.whitespace_after)
        )


class DropBoolOperand(Modifier):
    name, family = "bool_drop_operand", "boolean_chain"
    node_types = (cst.BooleanOperation,)

    def sites(self, node):
        return 2

    def rewrite(self, node, index, rng):
        kept = node.right if index == 0 else node.left
        if _paren(kept) is kept:
            return kept
        # A compound survivor keeps the chain's parentheses so precedence around it is unchanged.
        return kept.with_changes(
            lpar=list(node.lpar) + list(kept.lpar), rpar=list(kept.rpar) + list(node.rpar)
        )


# --- control flow ----------------------------------------------------------------------------


class InvertIfElse(Modifier):
    name, family = "invert_if_else", "control_flow_invert"
    node_types = (cst.If,)

    def sites(self, node):
        return int(isinstance(node.orelse, cst.Else))

    def rewrite(self, node, index, rng):
        return node.with_changes(body=node.orelse.body, orelse=node.orelse.with_changes(body=node.body))


class NegateIfCondition(Modifier):
    name, family = "negate_if_condition", "control_flow_invert"
    node_types = (cst.If, cst.While)

    def rewrite(self, node, index, rng):
        return node.with_changes(test=_negate(node.test))


class RemoveConditional(Modifier):
    name, family = "remove_conditional", "remove"
    node_types = (cst.If,)
    skip_elif = True

    def sites(self, node):
        return int(node.orelse is None)

    def rewrite(self, node, index, rng):
        return cst.RemoveFromParent()


class RemoveLoop(Modifier):
    name, family = "remove_loop", "remove"
    node_types = (cst.For, cst.While)

    def rewrite(self, node, index, rng):
        return cst.RemoveFromParent()


_ASSIGNS = (cst.Assign, cst.AugAssign, cst.AnnAssign)


class RemoveAssignment(Modifier):
    name, family = "remove_assign", "remove"
    node_types = (cst.SimpleStatementLine,)

    def sites(self, node):
        return int(len(node.body) == 1 and isinstance(node.body[0], _ASSIGNS))

    def rewrite(self, node, index, rng):
        return cst.RemoveFromParent()


class RemoveWrapper(Modifier):
    name, family = "remove_wrapper", "remove"
    node_types = (cst.With, cst.Try)

    def sites(self, node):
        return int(isinstance(node.body, cst.IndentedBlock))

    def rewrite(self, node, index, rng):
        body = list(node.body.body)
        # Keep comments that sat above the wrapper by handing them to its first statement.
        body[0] = body[0].with_changes(leading_lines=list(node.leading_lines) + list(body[0].leading_lines))
        return cst.FlattenSentinel(body)


def _is_docstring(stmt: cst.CSTNode) -> bool:
    return (
        isinstance(stmt, cst.SimpleStatementLine)
        and isinstance(stmt.body[0], cst.Expr)
        and isinstance(stmt.body[0].value, cst.SimpleString | cst.ConcatenatedString)
    )


class ShuffleStatements(Modifier):
    name, family = "shuffle_statements", "shuffle"
    node_types = (cst.IndentedBlock,)

    @staticmethod
    def _pairs(node: cst.IndentedBlock) -> list[int]:
        body = node.body
        return [
            i
            for i in range(len(body) - 1)
            if all(isinstance(s, cst.SimpleStatementLine) and not _is_docstring(s) for s in body[i : i + 2])
            and not body[i].deep_equals(body[i + 1])
        ]

    def sites(self, node):
        return len(self._pairs(node))

    def rewrite(self, node, index, rng):
        i = self._pairs(node)[index]
        body = list(node.body)
        first, second = body[i], body[i + 1]
        # Blank lines/comments stay in place; only the statements trade slots.
        body[i] = second.with_changes(leading_lines=first.leading_lines)
        body[i + 1] = first.with_changes(leading_lines=second.leading_lines)
        return node.with_changes(body=body)


# --- class-level -----------------------------------------------------------------------------


class RemoveBaseClass(Modifier):
    name, family = "class_remove_base", "class"
    scope = "class"
    node_types = (cst.ClassDef,)

    def sites(self, node):
        return len(node.bases)

    def rewrite(self, node, index, rng):
        bases = list(node.bases)
        del bases[index]
        if bases and index == len(bases):
            bases[-1] = bases[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
        if not bases and not node.keywords:
            return node.with_changes(bases=[], lpar=cst.MaybeSentinel.DEFAULT, rpar=cst.MaybeSentinel.DEFAULT)
        return node.with_changes(bases=bases)


class RemoveMethod(Modifier):
    name, family = "class_remove_method", "class"
    scope = "class"
    node_types = (cst.ClassDef,)

    @staticmethod
    def _methods(node: cst.ClassDef) -> list[int]:
        if not isinstance(node.body, cst.IndentedBlock):
            return []
        return [i for i, s in enumerate(node.body.body) if isinstance(s, cst.FunctionDef)]

    def sites(self, node):
        return len(self._methods(node))

    def rewrite(self, node, index, rng):
        i = self._methods(node)[index]
        body = list(node.body.body)
        del body[i]
        return node.with_changes(body=node.body.with_changes(body=body))


# --- off-by-one ------------------------------------------------------------------------------


class RangeOffByOne(Modifier):
    name, family = "range_off_by_one", "off_by_one"
    node_types = (cst.Call,)

    def sites(self, node):
        positional = [a for a in node.args if a.keyword is None and not a.star]
        is_range = isinstance(node.func, cst.Name) and node.func.value == "range"
        return int(is_range and 1 <= len(positional) == len(node.args) <= 3)

    def rewrite(self, node, index, rng):
        args = list(node.args)
        stop = 0 if len(args) == 1 else 1
        args[stop] = args[stop].with_changes(value=_shift(args[stop].value, rng.choice((-1, 1))))
        return node.with_changes(args=args)


class IndexOffByOne(Modifier):
    name, family = "index_off_by_one", "off_by_one"
    node_types = (cst.Subscript,)

    @staticmethod
    def _index(node: cst.Subscript) -> cst.BaseExpression | None:
        if len(node.slice) != 1 or not isinstance(node.slice[0].slice, cst.Index):
            return None
        value = node.slice[0].slice.value
        # Only numeric-looking indices: shifting a dict key like "name" is a type error, not a bug.
        numeric = (cst.Integer, cst.Name, cst.BinaryOperation, cst.UnaryOperation)
        return value if isinstance(value, numeric) else None

    def sites(self, node):
        return int(self._index(node) is not None)

    def rewrite(self, node, index, rng):
        element = node.slice[0]
        shifted = _shift(self._index(node), rng.choice((-1, 1)))
        return node.with_changes(
            slice=[element.with_changes(slice=element.slice.with_changes(value=shifted))]
        )


# --- wrong return value ----------------------------------------------------------------------


class ReturnNone(Modifier):
    name, family = "return_none", "wrong_return"
    node_types = (cst.Return,)

    def sites(self, node):
        return int(
            node.value is not None and not (isinstance(node.value, cst.Name) and node.value.value == "None")
        )

    def rewrite(self, node, index, rng):
        return node.with_changes(value=cst.Name("None"))


_BOOLISH = (cst.Comparison, cst.BooleanOperation)


class ReturnNegate(Modifier):
    name, family = "return_negate", "wrong_return"
    node_types = (cst.Return,)

    def sites(self, node):
        value = node.value
        if isinstance(value, _BOOLISH):
            return 1
        if isinstance(value, cst.UnaryOperation) and isinstance(value.operator, cst.Not):
            return 1
        return int(isinstance(value, cst.Name) and value.value in ("True", "False"))

    def rewrite(self, node, index, rng):
        value = node.value
        if isinstance(value, cst.Name):
            return node.with_changes(
                value=value.with_changes(value="False" if value.value == "True" else "True")
            )
        return node.with_changes(value=_negate(value))


MODIFIERS: dict[str, Modifier] = {
    m.name: m
    for m in (
        ArithmeticOperatorChange(),
        ComparisonOperatorChange(),
        SwapOperands(),
        IntegerConstantChange(),
        BoolConstantFlip(),
        SwapAndOr(),
        DropBoolOperand(),
        InvertIfElse(),
        NegateIfCondition(),
        RemoveConditional(),
        RemoveLoop(),
        RemoveAssignment(),
        RemoveWrapper(),
        ShuffleStatements(),
        RemoveBaseClass(),
        RemoveMethod(),
        RangeOffByOne(),
        IndexOffByOne(),
        ReturnNone(),
        ReturnNegate(),
    )
}


def mutate(source: str, entity: Entity, modifier: Modifier, rng: random.Random) -> str | None:
    """Apply `modifier` once; None when it has no site, changes nothing, or breaks the syntax."""
    result = modifier.apply(source, entity, rng)
    if result is None or result == source or not is_valid_python(result):
        return None
    return result


def unified_diff(path: str, before: str, after: str) -> str:
    """A patch that `git apply` accepts, turning `before` into `after` at `path`."""
    if before == after:
        return ""
    lines = difflib.unified_diff(
        before.splitlines(keepends=True), after.splitlines(keepends=True), f"a/{path}", f"b/{path}", n=3
    )
    out = [f"diff --git a/{path} b/{path}\n"]
    for line in lines:
        out.append(line)
        if not line.endswith("\n"):
            out.append("\n\\ No newline at end of file\n")
    return "".join(out)
