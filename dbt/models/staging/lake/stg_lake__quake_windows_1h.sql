with source as (
    select * from {{ source('lake', 'quake_windows_1h') }}
),

renamed as (
    select
        window_start,
        window_end,
        lower(net) as network_code,
        event_count,
        mag_count as magnitude_count,
        sum_mag as magnitude_sum,
        max_mag as magnitude_max,
        mean_mag as magnitude_mean,
        distinct_entities as distinct_quakes
    from source
)

select * from renamed
