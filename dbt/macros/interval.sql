{#- The interval a run builds, by event date: [interval_start(), interval_end()).
    `streamhouse marts build --start D --end D` sets the vars; without them a
    run covers the day it started (UTC), so the daily run re-merges that day
    and the `lookback_days` days before it. The lookback start is where a run re-merges from, so
    that a revision arriving days late updates its row.

    A run also re-merges the event dates in the var `revised_ranges`: the
    [first, last) date ranges outside that lookback which received versions
    arriving in the run's interval (found by `marts/arrivals.py` in bronze's
    ingest_date partitions). USGS revises some events weeks later; without
    them such a revision would wait for the next full refresh.

    Every bound is rendered as a literal (a date, a timestamp or epoch
    milliseconds), computed here once per run: Delta prunes partitions and
    skips files by their min/max statistics only for a literal compared with a
    stored column, never for an expression such as current_date() or
    to_date(timestamp_millis(event_time_ms)). -#}
{% macro _interval_date(name) -%}
    {%- set text = var(name) -%}
    {%- if text -%}
        {{ return(modules.datetime.date.fromisoformat(text)) }}
    {%- elif name == 'end_date' -%}
        {{ return(run_started_at.date() + modules.datetime.timedelta(days=1)) }}
    {%- else -%}
        {{ return(run_started_at.date()) }}
    {%- endif -%}
{%- endmacro %}

{% macro _lookback_date() -%}
    {{ return(_interval_date('start_date') - modules.datetime.timedelta(days=var('lookback_days') | int)) }}
{%- endmacro %}

{% macro _epoch_ms(day) -%}
    {{ return((day - modules.datetime.date(1970, 1, 1)).days * 86400000) }}
{%- endmacro %}

{% macro interval_start() -%}
    date'{{ _interval_date("start_date") }}'
{%- endmacro %}

{% macro interval_end() -%}
    date'{{ _interval_date("end_date") }}'
{%- endmacro %}

{% macro lookback_start() -%}
    date'{{ _lookback_date() }}'
{%- endmacro %}

{#- The event-date ranges [first, last) of an incremental run: [lookback start, end),
    then the revised ranges. -#}
{% macro _run_ranges() -%}
    {%- set ranges = [(_lookback_date(), _interval_date('end_date'))] -%}
    {%- for first, last in var('revised_ranges') -%}
        {%- set bounds = (modules.datetime.date.fromisoformat(first), modules.datetime.date.fromisoformat(last)) -%}
        {%- do ranges.append(bounds) -%}
    {%- endfor -%}
    {{ return(ranges) }}
{%- endmacro %}

{#- The rows of an incremental run: a date column in one of its ranges.
    Parenthesised: callers AND it with other conditions. -#}
{% macro in_interval(date_column) -%}
    (
    {%- for first, last in _run_ranges() %}
        {{ 'or ' if not loop.first }}{{ date_column }} >= date'{{ first }}' and {{ date_column }} < date'{{ last }}'
    {%- endfor %})
{%- endmacro %}

{#- The interval and its lookback on a UTC timestamp column: the window tables, which
    a late record never changes (the window queries leave late records out), so
    the revised ranges do not apply. -#}
{% macro in_interval_timestamp(timestamp_column) -%}
    {{ timestamp_column }} >= timestamp'{{ _lookback_date() }} 00:00:00'
    and {{ timestamp_column }} < timestamp'{{ _interval_date("end_date") }} 00:00:00'
{%- endmacro %}

{#- The same rows as in_interval, on epoch milliseconds (the lake's event_time_ms). -#}
{% macro in_interval_ms(ms_column) -%}
    (
    {%- for first, last in _run_ranges() %}
        {{ 'or ' if not loop.first }}{{ ms_column }} >= {{ _epoch_ms(first) }} and {{ ms_column }} < {{ _epoch_ms(last) }}
    {%- endfor %})
{%- endmacro %}
