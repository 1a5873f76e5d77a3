-- One row per quake that exists now: its newest version. A quake deleted at
-- the source leaves this table (the merge_delete strategy) and keeps its
-- history in fct_quake_revisions.
{{
    config(
        materialized='incremental',
        incremental_strategy='merge_delete',
        unique_key='quake_id',
        partition_by=['event_date'],
        incremental_predicates=[in_interval('DBT_INTERNAL_DEST.event_date')],
        post_hook=["{{ optimize_zorder('event_date', ['network_code', 'fe_region_number']) }}"],
    )
}}

with current_state as (
    select * from {{ ref('stg_lake__quakes') }}
    {% if is_incremental() %}
        where {{ in_interval_ms('event_time_ms') }}
    {% else %}
        where not is_deleted
    {% endif %}
),

region_cells as (
    select * from {{ ref('fe_region_cells') }}
),

revisions as (
    select
        quake_id,
        count(*) as revision_count,
        min(updated_at) as first_seen_at
    from {{ ref('int_quake_versions_deduplicated') }}
    {% if is_incremental() %}
        where {{ in_interval_ms('event_time_ms') }}
    {% endif %}
    group by quake_id
),

final as (
    select
        current_state.quake_id,
        current_state.updated_ms,
        current_state.updated_at,
        current_state.event_time,
        current_state.event_date,
        current_state.magnitude,
        current_state.magnitude_type,
        current_state.place,
        current_state.place_region,
        current_state.longitude,
        current_state.latitude,
        current_state.depth_km,
        current_state.status,
        current_state.network_code,
        region_cells.fe_region_number,
        current_state.event_type,
        current_state.is_tsunami_flagged,
        current_state.significance,
        current_state.felt_reports,
        current_state.pager_alert,
        coalesce(revisions.revision_count, 1) as revision_count,
        {% if is_incremental() -%}
        -- The MERGE deletes the target row of a tombstone; never stored.
        current_state.is_deleted as _is_deleted,
        {% endif -%}
        revisions.first_seen_at
    from current_state
    left join revisions on current_state.quake_id = revisions.quake_id
    left join region_cells
        on {{ fe_region_join('current_state.longitude', 'current_state.latitude', 'region_cells') }}
)

select * from final
