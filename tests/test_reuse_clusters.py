"""Clusters of reprints: passages grouped by the reuse rows that join them, one cluster per story, not per page."""

from archive.reuse import PassageClusters
from archive.reuse.clusters import cluster_rows
from archive.validate import problems

A, B, C, D = ("a" * 64, "b" * 64, "c" * 64, "d" * 64)
RUN_ID = "20261122T153000Z-3f9a"


def test_a_page_with_two_wire_stories_is_in_two_clusters_and_each_knows_its_earliest_member():
    clusters = PassageClusters()
    # A reprints story one at 0-100 (as B and C do, at other offsets) and story two at 200-300 (as D does).
    clusters.join(A, "1" * 64, 0, 100, B, "2" * 64, 10, 110)
    clusters.join(A, "1" * 64, 5, 95, C, None, 0, 90)  # A's passage with C: the same member of A as with B
    clusters.join(B, "2" * 64, 12, 100, C, None, 2, 90)
    clusters.join(A, "1" * 64, 200, 300, D, None, 0, 100)
    found = clusters.clusters()
    assert [[(d[0], s, e) for d, _, s, e in members] for members in found] == [
        [("a", 0, 100), ("b", 10, 110), ("c", 0, 90)],
        [("a", 200, 300), ("d", 0, 100)],
    ]
    dates = {A: "1890-01-05", B: "1890-01-02", C: None}
    rows = cluster_rows(RUN_ID, found, dates)
    assert [(r["doc_id"][0], r["size"], r["earliest_doc_id"], r["earliest_date"]) for r in rows] == [
        ("a", 3, B, "1890-01-02"), ("b", 3, B, "1890-01-02"), ("c", 3, B, "1890-01-02"),
        ("a", 2, A, "1890-01-05"), ("d", 2, A, "1890-01-05"),
    ]
    assert len({r["cluster_id"] for r in rows}) == 2
    assert rows[0]["text_sha256"] == "1" * 64 and rows[2]["text_sha256"] is None
    for row in rows:
        assert problems("reuse-cluster", row) == []
    # The same members give the same cluster id, whatever the order the rows came in.
    again = PassageClusters()
    again.join(A, None, 200, 300, D, None, 0, 100)
    again.join(C, None, 0, 90, B, None, 10, 110)
    again.join(B, None, 10, 110, A, None, 0, 100)
    assert {r["cluster_id"] for r in cluster_rows(RUN_ID, again.clusters(), {})} == {r["cluster_id"] for r in rows}
