"""`python -m bench`: the broker measured against its floor and its peers (see __main__)."""
