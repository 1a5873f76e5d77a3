{#- The interval a run builds, by event date: [interval_start(), interval_end()).
    `streamhouse marts build --start D --end D` sets the vars; without them a
    run covers the last `lookback_days` days up to today (the daily run). The
    lookback start is where a run re-merges from, so that a revision arriving
    days late updates its row. Dates are literals, so Delta prunes partitions
    at planning time. -#}
{% macro interval_end() -%}
    {%- if var('end_date') -%}
        date'{{ var("end_date") }}'
    {%- else -%}
        date_add(current_date(), 1)
    {%- endif -%}
{%- endmacro %}

{% macro interval_start() -%}
    {%- if var('start_date') -%}
        date'{{ var("start_date") }}'
    {%- else -%}
        date_sub(current_date(), {{ var('lookback_days') }})
    {%- endif -%}
{%- endmacro %}

{% macro lookback_start() -%}
    date_sub({{ interval_start() }}, {{ var('lookback_days') }})
{%- endmacro %}

{#- The rows of an incremental run: event dates in [lookback start, end). -#}
{% macro in_interval(date_column) -%}
    {{ date_column }} >= {{ lookback_start() }} and {{ date_column }} < {{ interval_end() }}
{%- endmacro %}
