{#- dbt-spark accepts only its own incremental strategies (a fixed list, not
    dbt's custom-strategy lookup), and its internal macros cannot be called
    by namespace. These two overrides add `merge_delete` (merge_delete.sql)
    and build the others with dbt's global macros, as dbt-spark does. -#}
{% macro dbt_spark_validate_get_incremental_strategy(raw_strategy, file_format) %}
    {%- set known = ['append', 'merge', 'merge_delete', 'insert_overwrite', 'microbatch'] -%}
    {%- if raw_strategy not in known -%}
        {% do exceptions.raise_compiler_error(
            "Unknown incremental strategy " ~ raw_strategy ~ ": use one of " ~ known | join(", ")) %}
    {%- endif -%}
    {%- if raw_strategy in ['merge', 'merge_delete'] and file_format not in ['delta', 'iceberg', 'hudi'] -%}
        {% do exceptions.raise_compiler_error(
            raw_strategy ~ " needs file_format delta, iceberg or hudi, not " ~ file_format) %}
    {%- endif -%}
    {% do return(raw_strategy) %}
{% endmacro %}

{% macro dbt_spark_get_incremental_sql(strategy, source, target, existing, unique_key, incremental_predicates) %}
    {%- if strategy == 'merge_delete' -%}
        {{ get_incremental_merge_delete_sql({
            "target_relation": target,
            "temp_relation": source,
            "unique_key": unique_key,
            "incremental_predicates": incremental_predicates,
        }) }}
    {%- elif strategy == 'merge' -%}
        {{ get_merge_sql(target, source, unique_key, dest_columns=none, incremental_predicates=incremental_predicates) }}
    {%- elif strategy == 'append' -%}
        {{ get_insert_into_sql(source, target) }}
    {%- else -%}
        {{ get_insert_overwrite_sql(source, target, existing) }}
    {%- endif -%}
{% endmacro %}
