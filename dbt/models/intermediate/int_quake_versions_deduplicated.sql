-- Each (quake, version) once: a re-delivered record is not a second revision.
-- The lowest Kafka position wins, as in silver, so the choice is deterministic.
-- The Flinn-Engdahl region is located once here for every mart.
with changes as (
    select * from {{ ref('stg_lake__quake_changes') }}
),

region_cells as (
    select * from {{ ref('fe_region_cells') }}
),

ranked as (
    select
        changes.*,
        row_number() over (
            partition by quake_id, updated_ms order by kafka_partition, kafka_offset
        ) as copy_rank
    from changes
),

versions as (
    select * from ranked where copy_rank = 1
),

located as (
    select
        versions.*,
        region_cells.fe_region_number
    from versions
    left join region_cells
        on {{ fe_region_join('versions.longitude', 'versions.latitude', 'region_cells') }}
)

select * from located
