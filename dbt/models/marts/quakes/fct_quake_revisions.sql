-- One row per version of a quake (every revision and the delete), by event date.
{{
    config(
        materialized='incremental',
        incremental_strategy='merge',
        unique_key=['quake_id', 'updated_ms'],
        partition_by=['event_date'],
        incremental_predicates=[in_interval('DBT_INTERNAL_DEST.event_date')],
        post_hook=["{{ optimize_zorder('event_date', ['quake_id']) }}"],
    )
}}

with versions as (
    select * from {{ ref('int_quake_versions_deduplicated') }}
    {% if is_incremental() %}
        where {{ in_interval_ms('event_time_ms') }}
    {% endif %}
),

final as (
    select
        quake_id,
        updated_ms,
        updated_at,
        op,
        is_delete,
        event_time,
        event_date,
        magnitude,
        magnitude_type,
        place,
        place_region,
        longitude,
        latitude,
        depth_km,
        status,
        network_code,
        fe_region_number,
        event_type,
        is_tsunami_flagged,
        significance,
        row_number() over (partition by quake_id order by updated_ms) as revision_number,
        kafka_partition,
        kafka_offset,
        ingested_at,
        is_late
    from versions
)

select * from final
