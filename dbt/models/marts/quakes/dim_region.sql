-- One row per Flinn-Engdahl seismic and geographic region (757), the
-- classification USGS and the ISC name events by (marts/flinn_engdahl.py).
{{
    config(
        materialized='incremental',
        incremental_strategy='merge_sync',
        unique_key='fe_region_number',
    )
}}

with regions as (
    select * from {{ ref('fe_regions') }}
),

extents as (
    select
        fe_region_number,
        count(*) as grid_runs
    from {{ ref('fe_region_cells') }}
    group by fe_region_number
)

select
    regions.fe_region_number,
    regions.fe_region_name,
    extents.grid_runs
from regions
left join extents on regions.fe_region_number = extents.fe_region_number
