{#- The join condition that finds a point's Flinn-Engdahl region in the
    fe_region_cells seed (marts/flinn_engdahl.py): the quadrant by the
    coordinates' signs (0 counts as positive, longitude -180 as 180), the
    whole degrees of |latitude|, and the run of |longitude| holding the point.
    The equalities make it a hash join; the range picks one run. -#}
{% macro fe_region_join(longitude, latitude, cells) -%}
    {%- set lon = "(case when " ~ longitude ~ " = -180 then 180 else " ~ longitude ~ " end)" -%}
    {{ cells }}.quadrant = concat(
        case when {{ latitude }} >= 0 then 'n' else 's' end,
        case when {{ lon }} >= 0 then 'e' else 'w' end
    )
    and {{ cells }}.abs_lat = cast(floor(abs({{ latitude }})) as int)
    and cast(floor(abs({{ lon }})) as int) >= {{ cells }}.abs_lon_from
    and cast(floor(abs({{ lon }})) as int) < {{ cells }}.abs_lon_to
{%- endmacro %}
