{#- The schema a model's +schema names, as is: `marts`, `staging` (dbt's
    default would prefix the target's schema: `marts_marts`). -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {{ (custom_schema_name or target.schema) | trim }}
{%- endmacro %}
