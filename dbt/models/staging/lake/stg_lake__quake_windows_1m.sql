with source as (
    select * from {{ source('lake', 'quake_windows_1m') }}
),

renamed as (
    select
        window_start,
        window_end,
        to_date(window_start) as window_date,
        lower(net) as network_code,
        event_count,
        mag_count as magnitude_count,
        sum_mag as magnitude_sum,
        max_mag as magnitude_max,
        entity_sketch
    from source
)

select * from renamed
