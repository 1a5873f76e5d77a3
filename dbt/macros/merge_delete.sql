{#- An incremental strategy for current-state tables: MERGE on the unique key
    that also DELETEs the target row when the source row is a tombstone
    (`_is_deleted`). dbt-spark's `merge` only updates and inserts, so a quake
    deleted at the source would stay in the mart forever.

    incremental_predicates restrict the target side of the ON clause (open-source
    Delta does not prune a MERGE's target by itself). -#}
{% macro get_incremental_merge_delete_sql(arg_dict) %}
    {%- set target = arg_dict["target_relation"] -%}
    {%- set source = arg_dict["temp_relation"] -%}
    {%- set unique_key = arg_dict["unique_key"] -%}
    {%- set keys = unique_key if unique_key is sequence and unique_key is not string else [unique_key] -%}
    {%- set predicates = arg_dict["incremental_predicates"] or [] -%}
    {%- set columns = adapter.get_columns_in_relation(target) | map(attribute="name") | list -%}
    merge into {{ target }} as DBT_INTERNAL_DEST
    using {{ source }} as DBT_INTERNAL_SOURCE
    on {% for key in keys %}DBT_INTERNAL_SOURCE.{{ key }} = DBT_INTERNAL_DEST.{{ key }}{% if not loop.last %} and {% endif %}{% endfor %}
    {%- for predicate in predicates %}
        and {{ predicate }}
    {%- endfor %}
    when matched and DBT_INTERNAL_SOURCE._is_deleted then delete
    when matched then update set
        {% for column in columns %}{{ column }} = DBT_INTERNAL_SOURCE.{{ column }}{% if not loop.last %}, {% endif %}{% endfor %}
    when not matched and not DBT_INTERNAL_SOURCE._is_deleted then insert
        ({{ columns | join(", ") }})
        values ({% for column in columns %}DBT_INTERNAL_SOURCE.{{ column }}{% if not loop.last %}, {% endif %}{% endfor %})
{% endmacro %}
