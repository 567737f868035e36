"""The notebook front end: ``%%stage`` / ``%nb2prod`` magics (:mod:`.magics`, their commands in
:mod:`.commands`), the live run view (:mod:`.run_view`), the parameters form (:mod:`.params_form`) and the
DAG picture (:mod:`.dag_view`). It calls :mod:`nb2prod.api` only, like every front end."""
