{#- dbt-spark accepts only its own incremental strategies (a fixed list, not
    dbt's custom-strategy lookup), and its internal macros cannot be called
    by namespace. These two overrides route merge, merge_delete and merge_sync
    to merge_changed_rows_sql (only new or changed rows reach the MERGE) and
    build the other strategies with dbt's global macros, as dbt-spark does. -#}
{% macro dbt_spark_validate_get_incremental_strategy(raw_strategy, file_format) %}
    {%- set known = ['append', 'merge', 'merge_delete', 'merge_sync', 'insert_overwrite'] -%}
    {%- if raw_strategy not in known -%}
        {% do exceptions.raise_compiler_error(
            "Unknown incremental strategy " ~ raw_strategy ~ ": use one of " ~ known | join(", ")) %}
    {%- endif -%}
    {%- if raw_strategy.startswith('merge') and file_format not in ['delta', 'iceberg', 'hudi'] -%}
        {% do exceptions.raise_compiler_error(
            raw_strategy ~ " needs file_format delta, iceberg or hudi, not " ~ file_format) %}
    {%- endif -%}
    {% do return(raw_strategy) %}
{% endmacro %}

{% macro dbt_spark_get_incremental_sql(strategy, source, target, existing, unique_key, incremental_predicates) %}
    {%- set deletes = {'merge': 'none', 'merge_delete': 'tombstones', 'merge_sync': 'missing'} -%}
    {%- if strategy in deletes -%}
        {%- if not unique_key -%}
            {% do exceptions.raise_compiler_error(strategy ~ " needs a unique_key") %}
        {%- endif -%}
        {{ merge_changed_rows_sql(target, source, unique_key, incremental_predicates, deletes[strategy]) }}
    {%- elif strategy == 'append' -%}
        {{ get_insert_into_sql(source, target) }}
    {%- else -%}
        {{ get_insert_overwrite_sql(source, target, existing) }}
    {%- endif -%}
{% endmacro %}
