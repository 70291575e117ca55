"""Every object the chart renders is named after the release, cut to 63 characters, and labelled."""

from __future__ import annotations

import pathlib

from tests.unit.chart import chart

# A Helm release name may be 53 characters long; this one is, and it does not contain "kfn",
# so the base name becomes "<release>-kfn" and the operator's "<base>-operator" (70 characters)
# must be cut.
LONG_RELEASE = "payments-platform-production-europe-west-serverless-x"


# --- names ------------------------------------------------------------------------------------


def test_a_release_named_kfn_names_the_operator_kfn_operator(helm: pathlib.Path) -> None:
    objects = chart.of(chart.render(helm), "operator")
    assert chart.kinds(objects) == [
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "NetworkPolicy",
        "Service",
        "ServiceAccount",
    ]
    assert {o["metadata"]["name"] for o in objects} == {"kfn-operator"}


def test_every_component_is_named_after_the_release_and_labelled_with_its_component(
    helm: pathlib.Path,
) -> None:
    objects = chart.render(helm)
    assert {o["metadata"]["labels"][chart.COMPONENT] for o in objects} == set(chart.COMPONENTS)
    for component in chart.COMPONENTS:
        assert {o["metadata"]["name"] for o in chart.of(objects, component)} == {f"kfn-{component}"}
    assert chart.kinds(chart.of(objects, "activator")) == [
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "Service",
        "ServiceAccount",
    ]
    assert chart.kinds(chart.of(objects, "autoscaler")) == [
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "NetworkPolicy",
        "Service",
        "ServiceAccount",
    ]


def test_names_and_labels_are_cut_to_63_characters_for_the_longest_release_name(
    helm: pathlib.Path,
) -> None:
    assert len(LONG_RELEASE) == 53
    objects = chart.render(helm, release=LONG_RELEASE)
    for obj in objects:
        name = obj["metadata"]["name"]
        suffix = "-" + obj["metadata"]["labels"][chart.COMPONENT]
        assert len(name) <= 63, name
        assert name.endswith(suffix), name
        assert name.startswith(LONG_RELEASE[:40]), name
        assert not name.removesuffix(suffix).endswith("-"), name
        for key, value in obj["metadata"]["labels"].items():
            assert len(value) <= 63, (key, value)
    assert len({o["metadata"]["name"] for o in objects}) == len(chart.COMPONENTS)


def test_a_long_full_name_override_is_cut_to_63_characters(helm: pathlib.Path) -> None:
    objects = chart.render(helm, {"fullnameOverride": "x" * 70})
    assert {o["metadata"]["name"] for o in objects} == {
        "x" * 54 + "-operator",
        "x" * 53 + "-activator",
        "x" * 56 + "-invoke",
        "x" * 55 + "-invoker",
        "x" * 52 + "-autoscaler",
        "x" * 58 + "-cron",
        "x" * 56 + "-stream",
        "x" * 56 + "-bucket",
        "x" * 53 + "-dashboard",
    }


# --- labels -----------------------------------------------------------------------------------


def test_every_object_carries_the_recommended_labels(helm: pathlib.Path) -> None:
    objects = chart.render(helm, release="fns")
    expected = {
        "app.kubernetes.io/name": "kfn",
        "app.kubernetes.io/instance": "fns",
        "app.kubernetes.io/version": chart.CHART_META["appVersion"],
        "app.kubernetes.io/managed-by": "Helm",
        "helm.sh/chart": f"kfn-{chart.CHART_META['version']}",
    }
    for obj in objects:
        labels = obj["metadata"]["labels"]
        assert labels | expected == labels, (obj["kind"], labels)
        assert labels[chart.COMPONENT] in chart.COMPONENTS


def test_the_operator_selector_leaves_out_the_version_so_upgrades_keep_it(
    helm: pathlib.Path,
) -> None:
    deployment = chart.one(chart.render(helm), "Deployment")
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector == {
        "app.kubernetes.io/name": "kfn",
        "app.kubernetes.io/instance": "kfn",
        "app.kubernetes.io/component": "operator",
    }
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert pod_labels | selector == pod_labels


def test_pod_labels_and_annotations_are_added_but_cannot_replace_the_selector_labels(
    helm: pathlib.Path,
) -> None:
    objects = chart.render(
        helm,
        {
            "operator": {
                "podLabels": {"team": "payments", "app.kubernetes.io/component": "mine"},
                "podAnnotations": {"example.com/scrape": "true"},
            }
        },
    )
    template = chart.one(objects, "Deployment")["spec"]["template"]
    assert template["metadata"]["labels"]["team"] == "payments"
    assert template["metadata"]["labels"]["app.kubernetes.io/component"] == "operator"
    assert template["metadata"]["annotations"]["example.com/scrape"] == "true"
