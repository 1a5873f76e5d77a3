-- One row per seismic network that contributes events: the documented
-- contributors (seed) and any code seen in the data but not in the seed.
{{ config(materialized='table') }}

with documented as (
    select * from {{ ref('usgs_networks') }}
),

observed as (
    select distinct network_code from {{ ref('stg_lake__quake_changes') }}
    where network_code is not null
    union
    select distinct network_code from {{ ref('stg_lake__quake_windows_1m') }}
),

final as (
    select
        coalesce(documented.network_code, observed.network_code) as network_code,
        coalesce(documented.network_name, 'Unknown network ' || observed.network_code)
            as network_name,
        documented.operator,
        documented.network_code is not null as is_documented
    from documented
    full outer join observed on documented.network_code = observed.network_code
)

select * from final
