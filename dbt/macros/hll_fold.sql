{#- The distinct count of a union of HLL sketches, the same on every plan.

    hll_union_agg merges the sketches in whatever order the scan and the
    shuffle hand them over, and a DataSketches union of sparse sketches
    keeps an in-order (HIP) estimate that depends on that order: a daily
    run reading 4 files of the minute windows and a full refresh reading
    30 gave 880 and 887 distinct quakes for one network and day
    (`streamhouse bench marts`, windows written a day per micro-batch).
    A rebuild must give the same value to change nothing, so a group's
    sketches are collected and sorted (binary order) by `sorted_sketches`,
    an aggregate, and `hll_fold_estimate` merges them one by one with
    hll_union: the same sketches always merge in the same order. -#}
{% macro sorted_sketches(sketch_column) -%}
    array_sort(collect_list({{ sketch_column }}))
{%- endmacro %}

{% macro hll_fold_estimate(sketches) -%}
    hll_sketch_estimate(
        aggregate(
            slice({{ sketches }}, 2, greatest(size({{ sketches }}) - 1, 0)),
            try_element_at({{ sketches }}, 1),
            (merged, sketch) -> hll_union(merged, sketch)
        )
    )
{%- endmacro %}
