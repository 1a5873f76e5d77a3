{#- Fails for every combination of `columns` that appears more than once (a composite key). -#}
{% test unique_combination(model, columns) %}
    select {{ columns | join(", ") }}, count(*) as copies
    from {{ model }}
    group by {{ columns | join(", ") }}
    having count(*) > 1
{% endtest %}
