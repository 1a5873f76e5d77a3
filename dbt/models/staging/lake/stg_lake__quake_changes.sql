-- One row per bronze record (a version may appear twice: a re-delivery).
with source as (
    select * from {{ source('lake', 'quake_changes') }}
),

renamed as (
    select
        entity_id as quake_id,
        op,
        op = 'DELETE' as is_delete,
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
        code as network_event_code,
        event_type,
        cast(tsunami as boolean) as is_tsunami_flagged,
        sig as significance,
        felt as felt_reports,
        alert as pager_alert,
        nst as station_count,
        gap_deg,
        rms_s,
        kafka_partition,
        kafka_offset,
        ingested_at,
        ingest_date,
        is_late
    from source
)

select * from renamed
