{#- Fails for every row where `expression` is not true (optionally only where `where` holds). -#}
{% test expression_is_true(model, expression) %}
    select * from {{ model }} where not ({{ expression }})
{% endtest %}
