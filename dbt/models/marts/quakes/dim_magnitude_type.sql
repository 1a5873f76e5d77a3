-- One row per magnitude type code USGS documents (seed): each notation the feed's
-- magType may carry (ms_20 and ms, mi and mwp, ...) has its own row.
{{
    config(
        materialized='incremental',
        incremental_strategy='merge_sync',
        unique_key='magnitude_type',
    )
}}

with documented as (
    select * from {{ ref('usgs_magnitude_types') }}
)

select
    lower(magnitude_type) as magnitude_type,
    usgs_notation,
    magnitude_name,
    magnitude_range,
    distance_range,
    description
from documented
