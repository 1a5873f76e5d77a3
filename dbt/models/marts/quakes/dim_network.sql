-- One row per seismic network that contributes events: the documented
-- contributors (seed) and any code seen in the data but not in the seed.
-- An incremental run looks for new codes in its interval only (a code once
-- seen keeps its row: the facts still refer to it), so it never scans all of
-- bronze; the MERGE changes nothing when no code is new.
{{
    config(
        materialized='incremental',
        incremental_strategy='merge',
        unique_key='network_code',
    )
}}

with documented as (
    select * from {{ ref('usgs_networks') }}
),

observed as (
    select distinct network_code from {{ ref('stg_lake__quake_changes') }}
    where network_code is not null
    {% if is_incremental() %}
        and {{ in_interval_ms('event_time_ms') }}
    {% endif %}
    union
    select distinct network_code from {{ ref('stg_lake__quake_windows_1m') }}
    {% if is_incremental() %}
        where {{ in_interval_timestamp('window_start') }}
    {% endif %}
),

final as (
    select
        coalesce(documented.network_code, observed.network_code) as network_code,
        coalesce(documented.network_name, 'Unknown network ' || observed.network_code)
            as network_name,
        documented.contributor_url,
        documented.network_code is not null as is_documented
    from documented
    full outer join observed on documented.network_code = observed.network_code
)

select * from final
