"""Index maps: properties against a small reference implementation, and their errors."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from prune_graph import (
    Compose,
    Factor,
    Identity,
    IndexMapError,
    IndexMapLike,
    Offset,
    Window,
    block_expand,
    compose,
    normalise_indices,
)

from .strategies import (
    composable_triples,
    factors,
    index_maps,
    index_sets,
    injective_maps,
    map_chains,
    maps_and_index_sets,
    messy_index_lists,
    offsets,
    primitive_maps,
    sizes,
)

# -- a reference: each map as a relation, written from the definitions ----------------------


def _unravel(fine: int, sizes: tuple[int, ...]) -> tuple[int, ...]:
    coords = []
    for size in reversed(sizes):
        fine, coord = divmod(fine, size)
        coords.append(coord)
    return tuple(reversed(coords))


def ref_image(index_map: IndexMapLike, i: int) -> set[int]:
    """The destination indices source index ``i`` touches."""
    if isinstance(index_map, Identity):
        return {i}
    if isinstance(index_map, Offset):
        return {i + index_map.offset}
    if isinstance(index_map, Window):
        k, rest = divmod(i - index_map.start, index_map.step)
        return {k} if i >= index_map.start and rest == 0 and k < index_map.length else set()
    if isinstance(index_map, Factor):
        return {f for f in range(index_map.dst_size) if _unravel(f, index_map.sizes)[index_map.axis] == i}
    assert isinstance(index_map, Compose)
    out = {i}
    for part in index_map.maps:
        out = set().union(*(ref_image(part, j) for j in out))
    return out


def ref_forward(index_map: IndexMapLike, indices: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(sorted(set().union(*(ref_image(index_map, i) for i in indices))))


def ref_backward(index_map: IndexMapLike, indices: tuple[int, ...]) -> tuple[int, ...]:
    """Source indices with a non-empty image that lies wholly inside ``indices``."""
    have = set(indices)
    return tuple(i for i in range(index_map.src_size) if (img := ref_image(index_map, i)) and img <= have)


def is_index_set(indices: tuple[int, ...], size: int) -> bool:
    return isinstance(indices, tuple) and list(indices) == sorted(set(indices)) and all(0 <= i < size for i in indices)


# -- forward, backward ---------------------------------------------------------------------


@given(maps_and_index_sets())
def test_forward_gives_a_sorted_unique_in_range_set_matching_the_reference(case):
    index_map, indices = case
    out = index_map.forward(indices)
    assert is_index_set(out, index_map.dst_size)
    assert out == ref_forward(index_map, indices)


@given(index_maps().flatmap(lambda m: st.tuples(st.just(m), messy_index_lists(m.src_size))))
def test_forward_normalises_unsorted_repeated_input(case):
    index_map, messy = case
    assert index_map.forward(messy) == index_map.forward(tuple(sorted(set(messy))))
    assert index_map.forward(iter(messy)) == index_map.forward(messy)


@given(primitive_maps().flatmap(lambda m: st.tuples(st.just(m), index_sets(m.dst_size))))
def test_backward_of_a_primitive_is_what_has_its_whole_image_inside(case):
    index_map, indices = case
    out = index_map.backward(indices)
    assert is_index_set(out, index_map.src_size)
    assert out == ref_backward(index_map, indices)


@given(index_maps().flatmap(lambda m: st.tuples(st.just(m), index_sets(m.dst_size))))
def test_backward_of_any_map_never_claims_an_index_whose_image_escapes(case):
    index_map, indices = case
    out = index_map.backward(indices)
    assert is_index_set(out, index_map.src_size)
    assert set(out) <= set(ref_backward(index_map, indices))
    assert set(index_map.forward(out)) <= set(indices)


@st.composite
def _chains_total_after_the_first(draw: st.DrawFn) -> list[IndexMapLike]:
    chain = [draw(primitive_maps())]
    for _ in range(draw(st.integers(1, 3))):
        size = chain[-1].dst_size
        total = [st.just(Identity(size)), offsets(size)] + ([factors(size)] if size else [])
        chain.append(draw(st.one_of(*total)))
    return chain


@given(_chains_total_after_the_first().flatmap(lambda c: st.tuples(st.just(c), index_sets(c[-1].dst_size))))
def test_backward_of_a_composition_matches_the_reference_when_later_maps_are_total(case):
    # with a partial map (a window) after a fan-out (a factor), Compose.backward is stricter than
    # the reference (see the test above); with every later map total the two agree
    chain, indices = case
    index_map = compose(*chain)
    assert index_map.backward(indices) == ref_backward(index_map, indices)


@given(injective_maps().flatmap(lambda m: st.tuples(st.just(m), index_sets(m.src_size))))
def test_injective_maps_round_trip_exactly_on_their_domain(case):
    index_map, indices = case
    on_domain = tuple(i for i in indices if i in set(index_map.domain()))
    image = index_map.forward(indices)
    assert len(image) == len(on_domain)
    assert index_map.backward(image) == on_domain
    assert index_map.backward(index_map.forward(on_domain)) == on_domain


@given(
    st.one_of(sizes().map(Identity), sizes().flatmap(lambda n: st.builds(Offset, st.just(0), st.just(n), st.just(n))))
)
def test_identity_like_maps_are_bijections(index_map):
    everything = tuple(range(index_map.src_size))
    assert index_map.forward(everything) == everything
    assert index_map.backward(everything) == everything


@given(injective_maps().flatmap(lambda m: st.tuples(st.just(m), index_sets(m.src_size))))
def test_identity_and_offset_round_trip_every_set(case):
    index_map, indices = case
    if isinstance(index_map, Window):
        return  # a window drops what lies outside it; covered by the domain test above
    assert index_map.backward(index_map.forward(indices)) == indices


# -- factor ----------------------------------------------------------------------------------


@given(sizes(1).flatmap(factors).flatmap(lambda f: st.tuples(st.just(f), index_sets(f.src_size))))
def test_factor_forward_sends_coarse_indices_to_their_whole_fibres(case):
    factor, indices = case
    out = factor.forward(indices)
    assert len(out) == len(indices) * (factor.dst_size // factor.src_size)
    chosen = set(indices)
    for fine in range(factor.dst_size):
        assert (fine in out) == (factor.coordinate(fine) in chosen)
    assert factor.backward(out) == indices


@given(sizes(1).flatmap(factors))
def test_factor_of_every_coarse_index_covers_every_fine_index(factor):
    assert factor.forward(range(factor.src_size)) == tuple(range(factor.dst_size))
    assert factor.backward(range(factor.dst_size)) == tuple(range(factor.src_size))
    assert factor.dst_size == math.prod(factor.sizes)


@given(sizes(1).flatmap(factors).flatmap(lambda f: st.tuples(st.just(f), index_sets(f.dst_size))))
def test_factor_backward_keeps_only_coarse_indices_whose_fibre_is_inside(case):
    factor, fine = case
    have = set(fine)
    expected = tuple(i for i in range(factor.src_size) if set(factor.forward((i,))) <= have)
    assert factor.backward(fine) == expected


def test_factor_hand_checked_heads_and_head_dims():
    heads = Factor((2, 3), 0)  # 2 heads of 3 channels
    head_dims = Factor((2, 3), 1)
    assert heads.forward((1,)) == (3, 4, 5)
    assert head_dims.forward((1,)) == (1, 4)
    assert head_dims.forward((0, 2)) == (0, 2, 3, 5)
    assert heads.backward((0, 1, 2, 3)) == (0,)  # head 1 is only partly inside
    assert head_dims.backward((1, 4, 5)) == (1,)
    assert [head_dims.coordinate(f) for f in range(6)] == [0, 1, 2, 0, 1, 2]
    middle = Factor((2, 3, 2), 1)
    assert middle.forward((2,)) == (4, 5, 10, 11)


def test_block_expand_is_a_flatten():
    assert block_expand(3, 2) == Factor((3, 2), 0)
    assert block_expand(3, 2).forward((1,)) == (2, 3)
    assert block_expand(3, 2).forward((0, 2)) == (0, 1, 4, 5)
    assert block_expand(3, 2).backward((2, 3, 4)) == (1,)


# -- composition -----------------------------------------------------------------------------


@given(composable_triples().flatmap(lambda abc: st.tuples(st.just(abc), index_sets(abc[0].src_size))))
def test_composition_is_associative(case):
    (a, b, c), indices = case
    left, right = compose(compose(a, b), c), compose(a, compose(b, c))
    assert left == right
    assert left.forward(indices) == right.forward(indices) == c.forward(b.forward(a.forward(indices)))
    everything = tuple(range(left.dst_size))
    assert left.backward(everything) == right.backward(everything)


@given(map_chains(1, 4).flatmap(lambda chain: st.tuples(st.just(chain), index_sets(chain[0].src_size))))
def test_composition_applies_maps_left_to_right(case):
    chain, indices = case
    expected = indices
    for index_map in chain:
        expected = index_map.forward(expected)
    assert compose(*chain).forward(indices) == expected
    assert compose(*chain).src_size == chain[0].src_size
    assert compose(*chain).dst_size == chain[-1].dst_size


@given(map_chains(1, 5))
def test_compose_flattens_and_drops_identities(chain):
    composed = compose(*chain)
    kept = [m for m in chain if not isinstance(m, Identity)]
    if isinstance(composed, Compose):
        assert list(composed.maps) == kept
        assert not any(isinstance(m, (Compose, Identity)) for m in composed.maps)
    elif kept:
        assert [composed] == kept
    else:
        assert composed == Identity(chain[0].src_size)


@given(maps_and_index_sets())
def test_identities_are_neutral(case):
    index_map, indices = case
    before = compose(Identity(index_map.src_size), index_map)
    after = compose(index_map, Identity(index_map.dst_size))
    assert before == after == index_map
    assert before.forward(indices) == index_map.forward(indices)
    assert compose(index_map) == index_map


def test_compose_of_identities_is_an_identity():
    assert compose(Identity(4), Identity(4)) == Identity(4)


def test_compose_hand_checked():
    # a concat part inside its output, then a split window that takes part of it back
    assert compose(Offset(2, 3, 5), Window(start=2, step=1, length=3, src_size=5)).forward((0, 2)) == (0, 2)
    flatten_then_slice = compose(block_expand(2, 3), Window(start=1, step=2, length=3, src_size=6))
    assert flatten_then_slice.forward((0,)) == (0,)
    assert flatten_then_slice.forward((1,)) == (1, 2)
    assert flatten_then_slice.codomain() == (0, 1, 2)


# -- domain, codomain ------------------------------------------------------------------------


@given(index_maps())
def test_domain_and_codomain_agree_with_forward(index_map):
    assert index_map.codomain() == index_map.forward(range(index_map.src_size))
    assert index_map.domain() == tuple(i for i in range(index_map.src_size) if index_map.forward((i,)))
    assert is_index_set(index_map.domain(), index_map.src_size)
    assert is_index_set(index_map.codomain(), index_map.dst_size)


def test_domain_and_codomain_of_each_primitive():
    assert Identity(3).domain() == Identity(3).codomain() == (0, 1, 2)
    assert Offset(2, 3, 7).domain() == (0, 1, 2)
    assert Offset(2, 3, 7).codomain() == (2, 3, 4)
    window = Window(start=1, step=3, length=3, src_size=8)
    assert window.domain() == (1, 4, 7)
    assert window.codomain() == (0, 1, 2)
    assert window.dst_size == 3
    assert Factor((2, 3), 1).domain() == (0, 1, 2)
    assert Factor((2, 3), 1).codomain() == tuple(range(6))
    assert Window(0, 1, 0, 0).domain() == Window(0, 1, 0, 0).codomain() == ()


# -- errors ----------------------------------------------------------------------------------


def test_index_map_error_is_a_value_error():
    assert issubclass(IndexMapError, ValueError)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Identity(-1), r"'size' must be a non-negative int \(got -1\)"),
        (lambda: Identity(True), r"'size' must be a non-negative int \(got True\)"),
        (lambda: Identity(2.0), r"'size' must be a non-negative int \(got 2.0\)"),
        (lambda: Offset(-1, 2, 4), r"'offset' must be a non-negative int \(got -1\)"),
        (lambda: Offset(0, -2, 4), r"'src_size' must be a non-negative int \(got -2\)"),
        (lambda: Offset(3, 2, 4), r"Offset: part \[3, 5\) does not fit in size 4"),
        (lambda: Window(0, 0, 2, 4), r"'step' must be a positive int \(got 0\)"),
        (lambda: Window(-1, 1, 2, 4), r"'start' must be a non-negative int \(got -1\)"),
        (lambda: Window(0, 1, -1, 4), r"'length' must be a non-negative int \(got -1\)"),
        (lambda: Window(2, 1, 3, 4), r"Window: start 2, step 1, length 3 overruns size 4"),
        (lambda: Window(0, 2, 3, 4), r"Window: start 0, step 2, length 3 overruns size 4"),
        (lambda: Factor((2, 0), 0), r"'sizes' must be positive ints \(got \(2, 0\)\)"),
        (lambda: Factor((), 0), r"'sizes' must be positive ints"),
        (lambda: Factor((2, -3), 0), r"'sizes' must be positive ints"),
        (lambda: Factor((2, 3), 2), r"'axis' must be in \[0, 2\) \(got 2\)"),
        (lambda: Factor((2, 3), -1), r"'axis' must be in \[0, 2\) \(got -1\)"),
        (lambda: block_expand(0, 2), r"'sizes' must be positive ints"),
        (lambda: compose(), r"compose\(\) needs at least one map"),
        (
            lambda: compose(Identity(3), Offset(0, 4, 4)),
            r"cannot compose Identity \(dst size 3\) with Offset \(src size 4\)",
        ),
        (
            lambda: compose(compose(Offset(0, 2, 5), Factor((5, 2), 0)), Window(0, 1, 2, 9)),
            r"cannot compose Factor \(dst size 10\) with Window \(src size 9\)",
        ),
        (lambda: Compose((Offset(0, 2, 3),)), r"Compose needs at least two maps \(got 1\)"),
        (lambda: Compose((Offset(0, 2, 3), Identity(4))), r"cannot compose Offset \(dst size 3\) with Identity"),
    ],
)
def test_bad_construction_names_the_problem(build, message):
    with pytest.raises(IndexMapError, match=message):
        build()


@given(index_maps(), st.integers(0, 3), st.integers(1, 3))
def test_out_of_range_and_negative_indices_are_named(index_map, extra, below):
    too_big, negative = index_map.src_size + extra, -below
    for bad in (too_big, negative):
        with pytest.raises(IndexMapError, match=rf"index {bad} out of range for size {index_map.src_size}"):
            index_map.forward((0, bad) if index_map.src_size else (bad,))
    too_big = index_map.dst_size + extra
    with pytest.raises(IndexMapError, match=rf"index {too_big} out of range for size {index_map.dst_size}"):
        index_map.backward((too_big,))
    with pytest.raises(IndexMapError, match=rf"index {negative} out of range"):
        index_map.backward((negative,))


@pytest.mark.parametrize("bad", [1.5, True, "1", None])
@pytest.mark.parametrize(
    "index_map",
    [Identity(3), Offset(1, 3, 5), Window(0, 1, 3, 3), Factor((3, 2), 0), compose(Offset(0, 3, 4), Identity(4))],
)
def test_indices_that_are_not_ints_are_refused_not_truncated(index_map, bad):
    with pytest.raises(IndexMapError, match=rf"index {bad!r} is not an int"):
        index_map.forward((0, bad))


def test_normalise_indices_sorts_dedupes_and_names_the_caller():
    assert normalise_indices([3, 1, 3, 0], 4) == (0, 1, 3)
    assert normalise_indices([], 0) == ()
    assert normalise_indices(range(3), 3) == (0, 1, 2)
    with pytest.raises(IndexMapError, match=r"plan of conv1: index 4 out of range for size 4"):
        normalise_indices([0, 4], 4, "plan of conv1")
    with pytest.raises(IndexMapError, match=r"index -2 out of range for size 4"):
        normalise_indices([-2, 9], 4)


def test_maps_are_frozen_and_hashable():
    index_map = compose(Offset(1, 2, 4), Window(0, 2, 2, 4))
    assert hash(index_map) == hash(compose(Offset(1, 2, 4), Window(0, 2, 2, 4)))
    with pytest.raises(AttributeError):
        index_map.maps = ()  # type: ignore[misc]
    assert Factor([2, 3], 1).sizes == (2, 3)
