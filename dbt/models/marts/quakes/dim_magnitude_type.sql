-- One row per magnitude type USGS documents (seed), plus 'unknown'.
{{ config(materialized='table') }}

with documented as (
    select * from {{ ref('usgs_magnitude_types') }}
)

select
    lower(magnitude_type) as magnitude_type,
    magnitude_name,
    magnitude_range,
    distance_range,
    description
from documented
