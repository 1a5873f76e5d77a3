{#- The MERGE of every incremental mart: only rows that are new or differ from
    the target reach it, so a rebuild that changes nothing commits nothing.

    Delta's MERGE rewrites every file holding a row the ON clause matched, even
    when a `when matched and <changed>` condition then updates none of them
    (measured: numTargetRowsCopied = every matched row, a new version with
    equal data). So the changed rows are found first, by an anti join with the
    target on every column (null-safe), and only they are merged; a MERGE whose
    source is empty touches no file and commits no version.

    `deletes` says which target rows go:
    - 'none' (strategy merge): none;
    - 'tombstones' (merge_delete): those whose source row has `_is_deleted`
      (a quake deleted at the source; the column is never stored);
    - 'missing' (merge_sync): those whose key the source no longer has (the
      dimensions, built whole from their seeds).

    incremental_predicates restrict the target on both sides, the anti join's
    read and the MERGE's ON clause: open-source Delta does not prune a MERGE's
    target by itself (dbt-spark issues #369, #435), and literal dates let it
    prune partitions at planning time. -#}
{% macro merge_changed_rows_sql(target, source, unique_key, incremental_predicates, deletes) %}
    {%- set keys = unique_key if unique_key is sequence and unique_key is not string else [unique_key] -%}
    {%- set predicates = incremental_predicates or [] -%}
    {%- set columns = adapter.get_columns_in_relation(target) | map(attribute="name") | list -%}
    {%- set values = [] -%}
    {%- for column in columns if column not in keys -%}
        {%- do values.append(column) -%}
    {%- endfor -%}
    {%- set scoped_target -%}
        (
            select * from {{ target }} as DBT_INTERNAL_DEST
            {%- if predicates %} where {{ predicates | join(" and ") }}{% endif %}
        )
    {%- endset -%}
    merge into {{ target }} as DBT_INTERNAL_DEST
    using (
        -- new rows, and rows whose values differ from the target's
        select
            {% for column in columns %}changed.{{ column }}, {% endfor %}false as _is_deleted
        from {{ source }} as changed
        left anti join {{ scoped_target }} as same
            on {% for key in keys %}changed.{{ key }} = same.{{ key }} and {% endfor -%}
            {% for column in values %}changed.{{ column }} <=> same.{{ column }}{% if not loop.last %} and {% endif %}{% else %}true{% endfor %}
        {%- if deletes == 'tombstones' %}
        where not changed._is_deleted
        union all
        -- tombstones of rows the target still holds
        select
            {% for column in columns %}gone.{{ column }}, {% endfor %}true as _is_deleted
        from {{ source }} as gone
        left semi join {{ scoped_target }} as held
            on {% for key in keys %}gone.{{ key }} = held.{{ key }}{% if not loop.last %} and {% endif %}{% endfor %}
        where gone._is_deleted
        {%- elif deletes == 'missing' %}
        union all
        -- target rows whose key the source no longer has
        select
            {% for column in columns %}held.{{ column }}, {% endfor %}true as _is_deleted
        from {{ scoped_target }} as held
        left anti join {{ source }} as gone
            on {% for key in keys %}held.{{ key }} = gone.{{ key }}{% if not loop.last %} and {% endif %}{% endfor %}
        {%- endif %}
    ) as DBT_INTERNAL_SOURCE
    on {% for key in keys %}DBT_INTERNAL_SOURCE.{{ key }} = DBT_INTERNAL_DEST.{{ key }}{% if not loop.last %} and {% endif %}{% endfor %}
    {%- for predicate in predicates %}
        and {{ predicate }}
    {%- endfor %}
    {%- if deletes != 'none' %}
    when matched and DBT_INTERNAL_SOURCE._is_deleted then delete
    {%- endif %}
    when matched then update set
        {% for column in columns %}{{ column }} = DBT_INTERNAL_SOURCE.{{ column }}{% if not loop.last %}, {% endif %}{% endfor %}
    when not matched and not DBT_INTERNAL_SOURCE._is_deleted then insert
        ({{ columns | join(", ") }})
        values ({% for column in columns %}DBT_INTERNAL_SOURCE.{{ column }}{% if not loop.last %}, {% endif %}{% endfor %})
{% endmacro %}
