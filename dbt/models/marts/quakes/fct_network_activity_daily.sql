-- One row per network and UTC day of event time, from the 1-minute windows:
-- events, magnitude figures and distinct quakes (a union of the minutes' HLL
-- sketches, so a day's distinct count is exact in its method, not a sum; merged
-- in a fixed order, so every plan gives the same estimate).
{{
    config(
        materialized='incremental',
        incremental_strategy='merge',
        unique_key=['activity_date', 'network_code'],
        incremental_predicates=[
            "DBT_INTERNAL_DEST.activity_date >= " ~ lookback_start(),
            "DBT_INTERNAL_DEST.activity_date < " ~ interval_end(),
        ],
    )
}}

with minutes as (
    select * from {{ ref('stg_lake__quake_windows_1m') }}
    {% if is_incremental() %}
        where {{ in_interval_timestamp('window_start') }}
    {% endif %}
),

daily as (
    select
        window_date as activity_date,
        network_code,
        sum(event_count) as event_count,
        sum(magnitude_count) as magnitude_count,
        -- Summed as decimals: a sum of doubles depends on the order Spark adds
        -- them in, and a rebuild must give the same value to change nothing.
        sum(cast(magnitude_sum as decimal(24, 6))) as magnitude_sum,
        max(magnitude_max) as magnitude_max,
        -- Not hll_union_agg: its estimate depends on the order it merges in.
        {{ sorted_sketches('entity_sketch') }} as entity_sketches,
        count(*) as active_minutes
    from minutes
    group by window_date, network_code
),

final as (
    select
        activity_date,
        network_code,
        event_count,
        magnitude_count,
        magnitude_max,
        cast(round(magnitude_sum / nullif(magnitude_count, 0), 6) as double) as magnitude_mean,
        {{ hll_fold_estimate('entity_sketches') }} as distinct_quakes,
        active_minutes
    from daily
)

select * from final
