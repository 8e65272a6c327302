"""Static proofs over every path a call can take through a flow.

Run by `validate_flow` once a flow is otherwise valid (every node parsed, every
target and prompt found), so a broken flow is not buried under proof failures.
Pure: it reads the model and the prompt catalog, nothing else.

The model. A call's position is a state (node, digits, code): the node it is at
and whether, on the way there, the caller passed an account-digits check (a
`check_account_digits` node left by `ok`) and a one-time-code check (a
`check_code` node left by `ok`). Facts are only ever gained, as at run time,
where the call's verification level only rises. (The engine cannot pass a code
before the digits chose an account; the model keeps that state anyway and proves
nothing from it.) From a state every exit of the node may be taken (which key the
caller presses, whether a code arrives...), except exits the engine never takes
with those facts:

- a `branch` on `verification` takes the one case of the level the facts give
  (`code` once a code passed, else `digits` once digits passed, else `none`;
  the `default` when that case is not written); on `fresh_code`, `yes` needs both
  facts (it may still be `no`: the code can be stale); on `identity`, `caller_id`
  or `language` every value may come (the `default` takes those no case names;
  `identity` is unset before `identify_caller`), so such a branch guards nothing;
- `check_number_change` leaves by `allowed` or `cooling_off`, `start_callback` by
  anything but `needs_code`, and `collect_new_number` by anything but `needs_code`
  or `no_input`, only with both facts (the engine re-checks fresh verification
  there itself).

A breadth-first search from (start, no digits, no code) visits every state a
call can reach, each by a shortest path. The proofs:

- protected: no state at a number-change step (`collect_new_number`,
  `start_callback`, `check_callback_code`) lacks either fact;
- call-back: no state lacking either fact is at a transfer node offering a
  call-back while holding (`offer_callback_after`): the call-back rings the number
  on file and joins the queue ahead of others with the caller's verification;
- placeholders: no state lacking a fact is at a node whose prompts (in any of
  the flow's languages) use a placeholder revealing account data: any placeholder
  but the few below that reveal none;
- no trap: from every state some transfer or hang-up is reachable; states that
  can only go round among themselves are reported once per closed group, naming
  a cycle through it.

Paths are written as node ids joined by " → ", each followed by the exit taken in
brackets: the key pressed (`menu[2]`), the branch case (`check[code]`, `[default]`)
or the named exit (`last4[ok]`); a node with a single way on (`next`) has none.
"""

from __future__ import annotations

import string
from collections import deque
from collections.abc import Iterable, Mapping, Sequence

from ivr.errors import DefinitionProblem
from ivr.flow.model import (
    FACTS,
    BranchNode,
    Catalog,
    CheckAccountDigitsNode,
    CheckCallbackCodeNode,
    CheckCodeNode,
    CheckNumberChangeNode,
    CollectNewNumberNode,
    HangupNode,
    Node,
    StartCallbackNode,
    TransferNode,
    VoicemailNode,
)

# (node id, account digits passed, one-time code passed)
State = tuple[str, bool, bool]
Edge = tuple[str, State]  # (exit label, next state)

# Steps that act on the phone number on file.
PROTECTED = (CollectNewNumberNode, StartCallbackNode, CheckCallbackCodeNode)
# Exits the engine may take without fresh full verification, by node kind (the
# kind's other exits need it).
UNVERIFIED_EXITS: Mapping[type[Node], frozenset[str]] = {
    CheckNumberChangeNode: frozenset({"needs_code"}),
    StartCallbackNode: frozenset({"needs_code"}),
    CollectNewNumberNode: frozenset({"needs_code", "no_input"}),
}
# Placeholders that reveal nothing about the account: how it was verified, why the
# call is transferred, minutes, the number the caller just keyed in, a code being
# read out, the caller's place in the queue. Any other (first_name, name, account_last4
# or one added later) does.
NON_ACCOUNT_PLACEHOLDERS = frozenset(
    {"method", "reason", "minutes", "new_number", "code_digits", "position"}
)
TERMINALS = (TransferNode, HangupNode, VoicemailNode)
FAILURE_EXITS = ("no_input", "invalid", "too_many_tries")
ARROW = " → "


class _Search:
    """Every state reachable from the start, in breadth-first order, with its edges."""

    def __init__(self, start: str, nodes: Mapping[str, Node], languages: Sequence[str]):
        first: State = (start, False, False)
        self.order: list[State] = []
        self.parent: dict[State, tuple[State, str] | None] = {first: None}
        self.edges: dict[State, list[Edge]] = {}
        pending = deque([first])
        while pending:
            state = pending.popleft()
            self.order.append(state)
            self.edges[state] = _edges(nodes[state[0]], state, languages)
            for label, target in self.edges[state]:
                if target not in self.parent:
                    self.parent[target] = (state, label)
                    pending.append(target)

    def path(self, state: State) -> str:
        """The shortest path from the start to `state`, in the module's notation."""
        steps = [state[0]]
        link = self.parent[state]
        while link is not None:
            previous, label = link
            steps.append(_step(previous[0], label))
            link = self.parent[previous]
        return ARROW.join(reversed(steps))


def prove_flow(
    file: str,
    start: str,
    nodes: Mapping[str, Node],
    languages: Sequence[str],
    catalog: Catalog,
) -> list[DefinitionProblem]:
    """Every path-proof failure of a structurally valid flow (see the module docstring)."""
    search = _Search(start, nodes, languages)

    def problem(node: Node, field_name: str, message: str) -> DefinitionProblem:
        return DefinitionProblem(file, node.id, field_name, message, node.line_of(field_name))

    problems = [problem(nodes[s[0]], "", message) for s, message in _protected(search, nodes)]
    problems += [
        problem(nodes[s[0]], "offer_callback_after", message)
        for s, message in _callback_offers(search, nodes)
    ]
    problems += [
        problem(nodes[s[0]], name, message)
        for s, name, message in _placeholders(search, nodes, languages, catalog)
    ]
    problems += [problem(nodes[s[0]], "", message) for s, message in _traps(search, nodes)]
    return problems


# ------------------------------------------------------------ the state graph


def _edges(node: Node, state: State, languages: Sequence[str]) -> list[Edge]:
    """The exits the engine may take from `node` with the facts of `state`."""
    _, digits, code = state
    exits = node.transitions()
    if isinstance(node, BranchNode):
        labels = []
        for value in _branch_values(node.on, digits, code, languages):
            label = f"cases.{value}" if value in node.cases else "default"
            if label not in labels:
                labels.append(label)
    else:
        labels = sorted(exits, key=lambda label: label in FAILURE_EXITS)  # stable: keys first
        allowed = UNVERIFIED_EXITS.get(type(node))
        if allowed is not None and not (digits and code):
            labels = [label for label in labels if label in allowed]
    edges: list[Edge] = []
    for label in labels:
        passed = label == "ok"
        new_digits = digits or (passed and isinstance(node, CheckAccountDigitsNode))
        new_code = code or (passed and isinstance(node, CheckCodeNode))
        edges.append((label, (exits[label], new_digits, new_code)))
    return edges


def _branch_values(on: str, digits: bool, code: bool, languages: Sequence[str]) -> list[str]:
    """The values a branch's fact can have at run time, given the facts on the path."""
    if on == "verification":  # the call's level, as CallState.verify raises it
        return ["code" if code else "digits" if digits else "none"]
    if on == "fresh_code":
        return ["yes", "no"] if digits and code else ["no"]
    if on == "language":
        return list(languages)
    values = sorted(FACTS[on])
    return [*values, ""] if on == "identity" else values  # "" before identify_caller


def _step(node_id: str, label: str) -> str:
    if label == "next":
        return node_id
    return f"{node_id}[{label.split('.', 1)[-1]}]"


def _facts(state: State) -> str:
    _, digits, code = state
    if digits and code:
        return "after full verification"
    if digits:
        return "after the account digits, before any one-time code"
    if code:
        return "after a one-time code, without the account digits"
    return "before any verification"


# ------------------------------------------------------------ the proofs


def _protected(search: _Search, nodes: Mapping[str, Node]) -> Iterable[tuple[State, str]]:
    """Number-change steps reachable without both checks: one shortest path each."""
    seen: set[str] = set()
    for state in search.order:
        node_id, digits, code = state
        if isinstance(nodes[node_id], PROTECTED) and not (digits and code) and node_id not in seen:
            seen.add(node_id)
            yield (
                state,
                "changes the phone number, but is reachable without passing both an"
                " account-digits check (check_account_digits ok) and a one-time code check"
                f" (check_code ok), {_facts(state)}: {search.path(state)}",
            )


def _callback_offers(search: _Search, nodes: Mapping[str, Node]) -> Iterable[tuple[State, str]]:
    """Transfers offering a call-back reachable without both checks: one shortest path each."""
    seen: set[str] = set()
    for state in search.order:
        node_id, digits, code = state
        node = nodes[node_id]
        offers = isinstance(node, TransferNode) and node.offer_callback_after is not None
        if offers and not (digits and code) and node_id not in seen:
            seen.add(node_id)
            yield (
                state,
                "offers a call-back to the number on file while holding, but is reachable"
                " without passing both an account-digits check (check_account_digits ok) and"
                f" a one-time code check (check_code ok), {_facts(state)}: {search.path(state)}",
            )


def _placeholders(
    search: _Search, nodes: Mapping[str, Node], languages: Sequence[str], catalog: Catalog
) -> Iterable[tuple[State, str, str]]:
    """Prompts speaking account facts on a node reachable before full verification."""
    seen: set[tuple[str, str]] = set()
    for state in search.order:
        node_id, digits, code = state
        if digits and code:
            continue
        for field_name, key in nodes[node_id].prompts().items():
            if (node_id, field_name) in seen:
                continue
            found: dict[str, list[str]] = {}
            for language in languages:
                text = catalog.languages[language].texts.get(key, "")
                for name in _account_placeholders(text):
                    found.setdefault(name, []).append(language)
            if not found:
                continue
            seen.add((node_id, field_name))
            used = ", ".join(f"{{{name}}} ({', '.join(langs)})" for name, langs in found.items())
            yield (
                state,
                field_name,
                f"prompt {key!r} uses {used}, which reveals account data, but the node is"
                " reachable before full verification (account digits and a one-time code),"
                f" {_facts(state)}: {search.path(state)}",
            )


def _account_placeholders(text: str) -> list[str]:
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(text) if name]
    except ValueError:  # the prompt loader reports bad braces
        return []
    return [name for name in dict.fromkeys(names) if name not in NON_ACCOUNT_PLACEHOLDERS]


def _traps(search: _Search, nodes: Mapping[str, Node]) -> Iterable[tuple[State, str]]:
    """Closed groups of states from which no transfer or hang-up can be reached."""
    incoming: dict[State, list[State]] = {state: [] for state in search.order}
    for state, edges in search.edges.items():
        for _, target in edges:
            incoming[target].append(state)
    escapes = {state for state in search.order if isinstance(nodes[state[0]], TERMINALS)}
    pending = list(escapes)
    while pending:
        for previous in incoming[pending.pop()]:
            if previous not in escapes:
                escapes.add(previous)
                pending.append(previous)
    trapped = [state for state in search.order if state not in escapes]
    ahead = {state: _ahead(search, state) for state in trapped}
    reported: set[frozenset[str]] = set()
    for state in trapped:  # breadth-first: the group's state nearest the start
        group = ahead[state]
        if not all(state in ahead[other] for other in group):
            continue  # it leads into a closed group, reported from there
        node_ids = frozenset(s[0] for s in group)
        if node_ids in reported:
            continue
        reported.add(node_ids)
        steps = _cycle_path(search, state, group)
        cycle = ARROW.join([*(_step(s[0], label) for s, label in steps), state[0]])
        others = sorted(node_ids - {s[0] for s, _ in steps})
        rest = f" (and through {', '.join(others)})" if others else ""
        yield (
            state,
            "a trap: these nodes only lead to each other, never to a transfer or hang-up:"
            f" {cycle}{rest}; reached {_facts(state)} by"
            f" {search.path(state)}",
        )


def _ahead(search: _Search, start: State) -> set[State]:
    """Every state reachable from `start`, itself included."""
    seen = {start}
    pending = [start]
    while pending:
        for _, target in search.edges[pending.pop()]:
            if target not in seen:
                seen.add(target)
                pending.append(target)
    return seen


def _cycle_path(search: _Search, start: State, group: set[State]) -> list[tuple[State, str]]:
    """A shortest way round from `start` back to it inside `group`, as (state, exit) steps;
    a node's own retry (`invalid` back to itself) only when there is no other."""
    parent: dict[State, tuple[State, str]] = {}
    pending = deque([start])
    while pending:
        state = pending.popleft()
        for label, target in search.edges[state]:
            if target == start and state != start:
                steps = [(state, label)]
                while state != start:
                    state, previous_label = parent[state]
                    steps.append((state, previous_label))
                return list(reversed(steps))
            if target in group and target not in parent:
                parent[target] = (state, label)
                pending.append(target)
    return [(start, label) for label, target in search.edges[start] if target == start][:1]
