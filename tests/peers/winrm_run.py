"""pywinrm as an independent WinRM client: runs one command line on an endpoint and prints a
JSON object {status_code, std_out, std_err}. Uses pywinrm's Protocol API with the full endpoint
URL (winrm.Session would drop the `/<host>/wsman` path).

usage: winrm_run.py ENDPOINT USER PASSWORD COMMAND_LINE
"""
import json
import sys

import winrm

endpoint, user, password, line = sys.argv[1:5]
p = winrm.Protocol(endpoint, transport="plaintext", username=user, password=password)
shell = p.open_shell()
cmd = p.run_command(shell, line)
out, err, code = p.get_command_output(shell, cmd)
p.cleanup_command(shell, cmd)
p.close_shell(shell)
print(json.dumps({
    "status_code": code,
    "std_out": out.decode("utf-8", "replace"),
    "std_err": err.decode("utf-8", "replace"),
}))
