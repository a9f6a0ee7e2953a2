"""pywinrm as an independent WinRM client: runs one command line on an endpoint and prints a
JSON object {status_code, std_out, std_err}.

usage: winrm_run.py ENDPOINT USER PASSWORD COMMAND_LINE
"""
import json
import sys

import winrm

endpoint, user, password, line = sys.argv[1:5]
session = winrm.Session(endpoint, auth=(user, password), transport="plaintext")
r = session.run_cmd(line)
print(json.dumps({
    "status_code": r.status_code,
    "std_out": r.std_out.decode("utf-8", "replace"),
    "std_err": r.std_err.decode("utf-8", "replace"),
}))
