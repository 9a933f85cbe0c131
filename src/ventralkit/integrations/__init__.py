"""Adapters to other toolkits, each behind an optional extra (``pip install 'ventralkit[brainscore]'``)."""
