-- Silver: one row per quake, its newest version (deletes are tombstones).
with source as (
    select * from {{ source('lake', 'quakes') }}
),

renamed as (
    select
        entity_id as quake_id,
        updated_ms,
        timestamp_millis(updated_ms) as updated_at,
        event_time_ms,
        timestamp_millis(event_time_ms) as event_time,
        to_date(timestamp_millis(event_time_ms)) as event_date,
        cast(mag as double) as magnitude,
        lower(mag_type) as magnitude_type,
        place,
        region as place_region,
        longitude,
        latitude,
        depth_km,
        status,
        lower(net) as network_code,
        event_type,
        cast(tsunami as boolean) as is_tsunami_flagged,
        sig as significance,
        felt as felt_reports,
        alert as pager_alert,
        is_deleted,
        ingested_at
    from source
)

select * from renamed
