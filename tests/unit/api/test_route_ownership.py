"""Routes belong to namespaces: the one decision the operator and the activator both apply.

Each table row is a set of HTTP Triggers' claims (namespace/name, the day it was created, host,
path prefix, methods) and the Triggers refused, each with the Trigger holding its route (None
where the admin's host policy refuses it). Every Trigger not listed as refused is granted.
"""

from __future__ import annotations

import itertools
import json
import re

import pytest

from kfn.api import routes

SHOP = "shop.example.com"


def t(
    key: str, day: int, prefix: str = "/", host: str = "", methods: tuple[str, ...] = ()
) -> routes.Claim:
    """The claim of Trigger ``namespace/name`` created on day ``day`` of January 2024."""
    namespace, name = key.split("/")
    return routes.Claim(
        namespace=namespace,
        name=name,
        created=f"2024-01-{day:02d}T00:00:00Z",
        host=host,
        path_prefix=prefix,
        methods=frozenset(methods),
    )


def k(key: str) -> routes.Key:
    namespace, name = key.split("/")
    return namespace, name


Refused = dict[str, str | None]


def check(
    claims: list[routes.Claim], refused: Refused, policy: routes.HostPolicy = routes.OPEN
) -> routes.Ownership:
    decided = routes.decide(claims, policy)
    assert {key: r.holder for key, r in decided.refused.items()} == {
        k(key): None if holder is None else k(holder) for key, holder in refused.items()
    }
    assert {c.key for c in decided.granted} == {c.key for c in claims} - set(decided.refused)
    assert list(decided.granted) == sorted(decided.granted, key=lambda c: c.order)
    return decided


# --- a named host belongs to the first namespace that uses it ---------------------------------

HOSTS = [
    pytest.param(
        [t("a/web", 1, "/api", SHOP), t("b/web", 2, "/other", SHOP)],
        {"b/web": "a/web"},
        id="a host belongs to the first namespace that uses it whatever the path prefix",
    ),
    pytest.param(
        [t("a/root", 1, "/", SHOP), t("a/api", 2, "/api", SHOP), t("a/v1", 3, "/api/v1", SHOP)],
        {},
        id="the namespace owning a host routes it with as many triggers as it likes",
    ),
    pytest.param(
        [t("a/web", 1, "/", SHOP), t("b/web", 2, "/", "blog.example.com")],
        {},
        id="each host is claimed on its own",
    ),
    pytest.param(
        [t("a/web", 1, "/", SHOP), t("b/web", 2, "/", "")],
        {},
        id="a named host and the default host are claimed apart",
    ),
    pytest.param(
        [t("b/web", 1, "/", SHOP), t("a/web", 1, "/", SHOP)],
        {"b/web": "a/web"},
        id="triggers created in the same second are ordered by namespace",
    ),
    pytest.param(
        [t("a/web", 1, "/", SHOP), t("b/web", 2, "/", SHOP), t("c/web", 3, "/", SHOP)],
        {"b/web": "a/web", "c/web": "a/web"},
        id="a refused trigger holds nothing: every later namespace is refused by the owner",
    ),
]


# --- on a shared host a path prefix belongs to the first namespace claiming it -----------------

PREFIXES = [
    pytest.param(
        [t("a/web", 1, "/api"), t("b/web", 2, "/api")],
        {"b/web": "a/web"},
        id="a prefix of the default host belongs to the first namespace that claims it",
    ),
    pytest.param(
        [t("a/web", 1, "/api"), t("b/web", 2, "/api/")],
        {"b/web": "a/web"},
        id="a trailing slash makes no other prefix",
    ),
    pytest.param(
        [t("a/web", 1, "/api"), t("b/web", 2, "/api/orders/7")],
        {"b/web": "a/web"},
        id="every path below a claimed prefix belongs to it",
    ),
    pytest.param(
        [t("a/web", 1, "/api"), t("b/web", 2, "/apix"), t("c/web", 3, "/ap")],
        {},
        id="prefixes are compared on whole segments",
    ),
    pytest.param(
        [t("a/web", 1, "/"), t("b/web", 2, "/shop")],
        {"b/web": "a/web"},
        id="the first namespace claiming the root holds the whole default host",
    ),
    pytest.param(
        [t("a/web", 1, "/api", methods=("GET",)), t("b/web", 2, "/api", methods=("POST",))],
        {"b/web": "a/web"},
        id="a prefix belongs to a namespace whatever the methods",
    ),
    pytest.param(
        [t("a/web", 1, "/api"), t("b/web", 2, "/api/x"), t("c/web", 3, "/api/x/y")],
        {"b/web": "a/web", "c/web": "a/web"},
        id="a refused prefix holds nothing below it",
    ),
]


# --- a later, shorter prefix takes only what nobody held before ---------------------------------

SHORTER = [
    pytest.param(
        [t("a/orders", 1, "/api/orders"), t("b/api", 2, "/api")],
        {},
        id="a later shorter prefix of another namespace is granted beside the longer one",
    ),
    pytest.param(
        [t("a/orders", 1, "/api/orders"), t("b/api", 2, "/api"), t("c/users", 3, "/api/users")],
        {"c/users": "b/api"},
        id="what the shorter prefix took belongs to it from then on",
    ),
    pytest.param(
        [t("a/orders", 1, "/api/orders"), t("b/api", 2, "/api"), t("c/x", 3, "/api/orders/x")],
        {"c/x": "a/orders"},
        id="the earlier longer claim keeps its whole subtree and is named as its holder",
    ),
    pytest.param(
        [t("a/orders", 1, "/api/orders"), t("b/root", 2, "/"), t("c/blog", 3, "/blog")],
        {"c/blog": "b/root"},
        id="a later root takes every path of the default host nobody held before",
    ),
]


# --- within one namespace --------------------------------------------------------------------

OWN = [
    pytest.param(
        [t("a/api", 1, "/api"), t("a/orders", 2, "/api/orders"), t("a/root", 3, "/")],
        {},
        id="a namespace nests its own prefixes freely",
    ),
    pytest.param(
        [t("a/get", 1, "/api", methods=("GET",)), t("a/post", 2, "/api", methods=("POST",))],
        {},
        id="a namespace shares a prefix between triggers of other methods",
    ),
    pytest.param(
        [t("a/old", 1, "/api"), t("a/new", 2, "/api")],
        {"a/new": "a/old"},
        id="the same route twice in a namespace goes to the older trigger",
    ),
    pytest.param(
        [t("a/x", 1, "/api", methods=("GET", "POST")), t("a/y", 2, "/api", methods=("POST",))],
        {"a/y": "a/x"},
        id="overlapping methods make the same route",
    ),
    pytest.param(
        [t("a/x", 1, "/api", methods=("GET",)), t("a/y", 2, "/api")],
        {"a/y": "a/x"},
        id="a trigger without methods overlaps every method",
    ),
    pytest.param(
        [t("a/old", 1, "/", SHOP), t("a/new", 1, "/", SHOP)],
        {"a/old": "a/new"},
        id="triggers of one namespace created in the same second are ordered by name",
    ),
]


@pytest.mark.parametrize(("claims", "refused"), [*HOSTS, *PREFIXES, *SHORTER, *OWN])
def test_first_claims_decide_who_owns_each_route(
    claims: list[routes.Claim], refused: Refused
) -> None:
    check(claims, refused)


# --- the cluster admin's host assignments and default hosts ----------------------------------

TEAM_A = routes.policy({"a": ["*.team-a.example.com", "team-a.example.com"]})
ZONE = routes.policy({"a": ["*.example.com"], "b": ["api.example.com", "*.b.example.com"]})
SHARED = routes.policy({"a": [SHOP], "b": [SHOP]})
DEFAULT = routes.policy({"a": ["*.example.com"]}, ["fn.example.com", "kfn-activator"])

ASSIGNED = [
    pytest.param(
        TEAM_A,
        [t("b/web", 1, "/", "x.team-a.example.com"), t("a/web", 2, "/", "x.team-a.example.com")],
        {"b/web": None},
        id="an assigned host is refused to other namespaces even when they came first",
    ),
    pytest.param(
        TEAM_A,
        [t("b/deep", 1, "/", "x.y.team-a.example.com"), t("b/apex", 1, "/", "team-a.example.com")],
        {"b/deep": None, "b/apex": None},
        id="a wildcard covers hosts at any depth and the apex is assigned by its own name",
    ),
    pytest.param(
        routes.policy({"a": ["*.team-a.example.com"]}),
        [t("b/apex", 1, "/", "team-a.example.com")],
        {},
        id="a wildcard does not cover the apex",
    ),
    pytest.param(
        ZONE,
        [
            t("a/api", 1, "/", "api.example.com"),
            t("b/api", 2, "/", "api.example.com"),
            t("b/www", 3, "/", "www.example.com"),
        ],
        {"a/api": None, "b/www": None},
        id="an exact name wins over a wildcard",
    ),
    pytest.param(
        ZONE,
        [t("a/x", 1, "/", "x.b.example.com"), t("b/x", 2, "/", "x.b.example.com")],
        {"a/x": None},
        id="a longer wildcard wins over a shorter one",
    ),
    pytest.param(
        routes.policy({"a": [SHOP]}),
        [t("a/root", 1, "/", SHOP), t("a/api", 2, "/api", SHOP)],
        {},
        id="a host assigned to one namespace is all its own",
    ),
    pytest.param(
        SHARED,
        [
            t("a/api", 1, "/api", SHOP),
            t("b/orders", 2, "/api/orders", SHOP),
            t("b/blog", 3, "/blog", SHOP),
            t("c/web", 4, "/shop", SHOP),
        ],
        {"b/orders": "a/api", "c/web": None},
        id="a host assigned to several namespaces is shared among them by path prefix",
    ),
    pytest.param(
        DEFAULT,
        [t("a/fn", 1, "/", "fn.example.com"), t("b/svc", 2, "/x", "kfn-activator")],
        {"a/fn": None, "b/svc": None},
        id="no trigger may claim a default host, even one a wildcard assigns",
    ),
]


@pytest.mark.parametrize(("policy", "claims", "refused"), ASSIGNED)
def test_the_admins_host_policy_wins_over_first_claims(
    policy: routes.HostPolicy, claims: list[routes.Claim], refused: Refused
) -> None:
    check(claims, refused, policy)


# --- order, and taking over ------------------------------------------------------------------

MIXED = [
    t("a/web", 3, "/", SHOP),
    t("b/web", 4, "/", SHOP),
    t("a/orders", 1, "/api/orders"),
    t("b/api", 2, "/api"),
    t("c/orders", 5, "/api/orders/x"),
    t("c/users", 5, "/api/users"),
]


def test_the_outcome_depends_on_creation_times_not_on_the_order_claims_arrive_in() -> None:
    first = routes.decide(MIXED)
    for order in itertools.permutations(MIXED):
        assert routes.decide(order) == first


@pytest.mark.parametrize(
    ("claims", "gone", "refused"),
    [
        pytest.param(
            [t("a/web", 1, "/", SHOP), t("c/web", 2, "/", SHOP), t("b/web", 3, "/", SHOP)],
            "a/web",
            {"b/web": "c/web"},
            id="a host goes to the next namespace by creation time",
        ),
        pytest.param(
            [t("a/api", 1, "/api"), t("c/x", 2, "/api/x"), t("b/y", 3, "/api/x/y")],
            "a/api",
            {"b/y": "c/x"},
            id="a freed prefix goes to the oldest claimant under it, which then holds its own",
        ),
        pytest.param(
            [t("a/x", 1, "/api/orders"), t("c/x", 2, "/api/orders"), t("b/api", 3, "/api")],
            "a/x",
            {},
            id="a freed subtree goes to the older claimant on it, beside a shorter prefix",
        ),
    ],
)
def test_when_the_owner_goes_the_next_claimant_takes_over(
    claims: list[routes.Claim], gone: str, refused: Refused
) -> None:
    assert k(gone) not in routes.decide(claims).refused
    check([c for c in claims if c.key != k(gone)], refused)


# --- who may answer a request for a host -------------------------------------------------------


def test_a_host_nobody_owns_is_answered_by_every_namespaces_default_routes() -> None:
    assert routes.decide([t("a/web", 1, "/")]).answering("anything.example") is None


def test_a_claimed_host_is_answered_only_by_its_namespace_whoever_tried_after() -> None:
    decided = routes.decide([t("a/web", 1, "/x", SHOP), t("b/web", 2, "/y", SHOP)])
    assert decided.answering(SHOP) == frozenset({"a"})


def test_an_assigned_host_is_answered_only_by_its_namespaces_before_any_trigger_names_it() -> None:
    decided = routes.decide([], SHARED)
    assert decided.answering(SHOP) == frozenset({"a", "b"})
    assert routes.decide([], TEAM_A).answering("new.team-a.example.com") == frozenset({"a"})


def test_a_default_host_is_answered_by_every_namespace_even_under_an_assigned_wildcard() -> None:
    assert routes.decide([], DEFAULT).answering("fn.example.com") is None
    assert routes.decide([], DEFAULT).answering("www.example.com") == frozenset({"a"})


# --- what a refused user reads ---------------------------------------------------------------


def _message(claims: list[routes.Claim], key: str, policy: routes.HostPolicy = routes.OPEN) -> str:
    return routes.decide(claims, policy).refused[k(key)].message


@pytest.mark.parametrize(
    ("claims", "policy", "expected"),
    [
        pytest.param(
            [t("a/web", 1, "/", SHOP), t("b/web", 2, "/", SHOP)],
            routes.OPEN,
            [f"host {SHOP} belongs to namespace a", "Trigger a/web used it first",
             "Use another host", "assign"],
            id="a taken host names its namespace and trigger and offers another host",
        ),
        pytest.param(
            [t("a/web", 1, "/api"), t("b/web", 2, "/api/orders")],
            routes.OPEN,
            ["path prefix /api/orders on the default host", "belongs to namespace a",
             "Trigger a/web claimed /api first", "Use a prefix outside /api"],
            id="a taken prefix names the claim holding it and offers a prefix outside it",
        ),
        pytest.param(
            [t("a/web", 1, "/"), t("b/web", 2, "/api")],
            routes.OPEN,
            ["Trigger a/web claimed / first", "Use a host of this namespace's own"],
            id="under a taken root only another host is offered",
        ),
        pytest.param(
            [t("b/web", 1, "/", "x.team-a.example.com")],
            TEAM_A,
            ["assigned by the cluster admin to namespace a (pattern *.team-a.example.com)",
             "not to b", "ask the cluster admin"],
            id="an assigned host names the pattern and the namespaces it is assigned to",
        ),
        pytest.param(
            [t("b/web", 1, "/", "fn.example.com")],
            DEFAULT,
            ["host fn.example.com is the shared default host", "Remove spec.http.host"],
            id="a default host says to leave the host out",
        ),
        pytest.param(
            [t("a/old", 1, "/api"), t("a/new", 2, "/api")],
            routes.OPEN,
            ["Trigger a/old already routes this host, path prefix and method"],
            id="the same route names the older trigger",
        ),
    ],
)  # fmt: skip
def test_a_refusal_names_who_holds_the_route_and_what_to_do(
    claims: list[routes.Claim], policy: routes.HostPolicy, expected: list[str]
) -> None:
    message = _message(claims, claims[-1].namespace + "/" + claims[-1].name, policy)
    for fragment in expected:
        assert fragment in message


# --- the chart's values ----------------------------------------------------------------------


def test_the_policy_reads_the_json_the_chart_passes_most_specific_pattern_first() -> None:
    policy = routes.policy_from_json(
        json.dumps(
            {
                "hostAssignments": {"a": ["*.example.com", "api.example.com"],
                                    "b": ["api.example.com"]},
                "defaultHosts": ["fn.example.com"],
            }
        )
    )  # fmt: skip
    assert [(a.pattern, a.namespaces) for a in policy.assignments] == [
        ("api.example.com", frozenset({"a", "b"})),
        ("*.example.com", frozenset({"a"})),
    ]
    assert policy.default_hosts == frozenset({"fn.example.com"})
    assert routes.policy_from_json("") == routes.OPEN
    assert routes.policy_from_json('{"hostAssignments": {}, "defaultHosts": []}') == routes.OPEN


@pytest.mark.parametrize(
    ("text", "refusal"),
    [
        ("{not json", "must be JSON"),
        ('["a"]', "a JSON object of hostAssignments and defaultHosts"),
        ('{"hosts": {}}', "a JSON object of hostAssignments and defaultHosts"),
        ('{"hostAssignments": ["a"]}', "hostAssignments is a JSON object"),
        ('{"hostAssignments": {"a": "x.example.com"}}', "needs a list of host patterns"),
        ('{"hostAssignments": {"Team-A": ["x.example.com"]}}', "'Team-A' is not a namespace"),
        ('{"hostAssignments": {"a": ["X.example.com"]}}', "'X.example.com' of a is neither"),
        ('{"hostAssignments": {"a": ["*.*.example.com"]}}', "'*.*.example.com' of a is neither"),
        ('{"hostAssignments": {"a": ["example.com:8080"]}}', "neither"),
        ('{"defaultHosts": ["*.example.com"]}', "'*.example.com' is not a lower-case host"),
        ('{"hostAssignments": {"a": ["fn.example.com"]}, "defaultHosts": ["fn.example.com"]}',
         "both a default host and assigned"),
    ],
)  # fmt: skip
def test_a_malformed_policy_is_refused_saying_what_is_wrong(text: str, refusal: str) -> None:
    with pytest.raises(ValueError, match=re.escape(refusal)):
        routes.policy_from_json(text)
