-- Each (quake, version) once: a re-delivered record is not a second revision.
-- The lowest Kafka position wins, as in silver, so the choice is deterministic.
-- The Flinn-Engdahl region is located once here for every mart.
--
-- event_time_ms is in the window's partition although a version has one event
-- time: Spark pushes a filter through a window only on its partition columns,
-- so the marts' interval on event_time_ms reaches bronze's scan and Delta
-- skips the files outside it, instead of deduplicating all of bronze first.
-- (Two copies of a version that disagreed on it would both be kept, and the
-- unique_combination test below would fail.)
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
            partition by changes.quake_id, changes.updated_ms, changes.event_time_ms
            order by changes.kafka_partition, changes.kafka_offset
        ) as copy_rank
    from changes
),

versions as (
    select * from ranked
    where copy_rank = 1
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
