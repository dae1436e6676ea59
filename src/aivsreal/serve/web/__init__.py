"""Static files of the web page (served by aivsreal.serve.app)."""
