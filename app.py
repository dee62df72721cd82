"""The sparkgate Chalice app: registers the blueprints and nothing else."""

from chalice import Chalice

from chalicelib.api import entrance, token, users, works
from chalicelib.api.middleware import register_middleware

app = Chalice(app_name="sparkgate", configure_logs=False)
app.experimental_feature_flags.update(["WEBSOCKETS"])
register_middleware(app)
for surface in (token, users, works, entrance):
    app.register_blueprint(surface.blueprint)
