"""The Streamlit front end: `streamlit run app/streamlit_app.py`."""
