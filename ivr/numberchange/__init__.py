"""Changing the phone number on file (product.md, journey 5).

`rules` judges the number a caller keyed in; `service` runs the journey and its code
call-back, keeping the attempt in Redis (`pending`); `onfile` applies the change to
the database in one race-safe transaction; `notices` tells the old number and mailbox.
"""
