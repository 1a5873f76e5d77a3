{#- Post-hook: Z-order the partitions of the interval by the columns queries
    filter on, when the run asks for it (var zorder). Delta rejects Hive
    bucketing (dbt-spark's clustered_by), and liquid clustering cannot be
    combined with partition_by, so ZORDER is how these tables cluster within
    a date. It rewrites every file of the partitions it touches, which is
    why the daily maintenance run does it and not every build. -#}
{% macro optimize_zorder(date_column, columns) -%}
    {%- if var('zorder') and is_incremental() -%}
        optimize {{ this }} where {{ in_interval(date_column) }} zorder by ({{ columns | join(", ") }})
    {%- elif var('zorder') -%}
        optimize {{ this }} zorder by ({{ columns | join(", ") }})
    {%- else -%}
        select 1
    {%- endif -%}
{%- endmacro %}
