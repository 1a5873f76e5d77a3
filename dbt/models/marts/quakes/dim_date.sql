-- One row per calendar day (UTC) between the vars dim_date_start and dim_date_end.
{{
    config(
        materialized='incremental',
        incremental_strategy='merge_sync',
        unique_key='date_day',
    )
}}

with days as (
    select explode(
        sequence(date'{{ var("dim_date_start") }}', date_sub(date'{{ var("dim_date_end") }}', 1))
    ) as date_day
)

select
    date_day,
    year(date_day) as year_number,
    quarter(date_day) as quarter_number,
    month(date_day) as month_number,
    date_format(date_day, 'MMMM') as month_name,
    day(date_day) as day_of_month,
    dayofweek(date_day) as day_of_week,
    date_format(date_day, 'EEEE') as day_name,
    weekofyear(date_day) as iso_week_number,
    dayofweek(date_day) in (1, 7) as is_weekend
from days
