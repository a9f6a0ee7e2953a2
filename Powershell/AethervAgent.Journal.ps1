<#
.SYNOPSIS
    The idempotency journal of the Aether-V host agent.
.DESCRIPTION
    Each mutating request with an idempotency_key is journaled under
    C:\ProgramData\Aether-V\journal\<sha256-of-key>.json. A repeated key returns the journaled
    result without running the operation again. While the first run is in flight an
    "<sha256>.inprogress" marker (created exclusively, holding the owner's process id and start
    time) exists and later requests wait for it. Only successes are journaled: a failed
    operation left nothing behind, so a retry under the same key runs again. Results are
    written to a temporary file and renamed into place, so a reader never sees half a file.
#>

function Get-AethervJournalDir {
    $dir = Join-Path $script:AethervDataRoot 'journal'
    if (-not (Test-Path -LiteralPath $dir -PathType Container)) {
        New-Item -ItemType Directory -Path $dir -Force | Out-Null
    }
    return $dir
}

function Get-AethervKeyHash {
    param([string]$Key)
    $sha = [System.Security.Cryptography.SHA256]::Create()
    try {
        $bytes = $sha.ComputeHash([Text.Encoding]::UTF8.GetBytes($Key))
        return ([BitConverter]::ToString($bytes) -replace '-', '').ToLowerInvariant()
    }
    finally { $sha.Dispose() }
}

function Read-AethervJournalEntry {
    param([string]$Path)
    $entry = [IO.File]::ReadAllText($Path) | ConvertFrom-Json
    return @{
        status  = [string]$entry.status
        message = [string]$entry.message
        data    = (ConvertTo-AethervHashtable -InputObject $entry.data)
        code    = $entry.code
    }
}

function Test-AethervMarkerAlive {
    # True while the process that wrote the marker still runs.
    param([string]$Marker)
    try {
        $owner = [IO.File]::ReadAllText($Marker) | ConvertFrom-Json
    }
    catch { return $true }
    if ($null -eq $owner -or $null -eq $owner.pid) { return $true }
    $p = Get-Process -Id ([int]$owner.pid) -ErrorAction SilentlyContinue
    if ($null -eq $p) { return $false }
    try {
        return ($p.StartTime.ToUniversalTime().Ticks -eq [long]$owner.started)
    }
    catch { return $true }
}

function Invoke-AethervJournaled {
    param(
        [string]$Key,
        [string]$Operation,
        [scriptblock]$Body,
        [int]$MaxWaitSeconds = 3600
    )
    $dir = Get-AethervJournalDir
    $hash = Get-AethervKeyHash -Key $Key
    $resultPath = Join-Path $dir ($hash + '.json')
    $marker = Join-Path $dir ($hash + '.inprogress')
    $waited = $false
    $deadline = (Get-Date).AddSeconds($MaxWaitSeconds)
    while ($true) {
        if (Test-Path -LiteralPath $resultPath -PathType Leaf) {
            Write-AethervLog ("Idempotency key '" + $Key + "' was already executed; returning the journaled result")
            return Read-AethervJournalEntry -Path $resultPath
        }
        $stream = $null
        try {
            $stream = [IO.File]::Open($marker, [IO.FileMode]::CreateNew, [IO.FileAccess]::Write, [IO.FileShare]::Read)
        }
        catch [System.IO.IOException] {
            $stream = $null
        }
        if ($null -ne $stream) { break }
        if (-not (Test-AethervMarkerAlive -Marker $marker)) {
            Remove-Item -LiteralPath $marker -Force -ErrorAction SilentlyContinue
            Stop-Aetherv -Code 'journal_abandoned' -Message ("the first execution of idempotency key '" + $Key + "' was abandoned")
        }
        if (-not $waited) {
            Write-AethervLog ("Idempotency key '" + $Key + "' is being executed by another request; waiting")
            $waited = $true
        }
        if ((Get-Date) -gt $deadline) {
            Stop-Aetherv -Code 'journal_wait_timeout' -Message ("gave up waiting for idempotency key '" + $Key + "'")
        }
        Start-Sleep -Milliseconds 500
    }
    try {
        $self = Get-Process -Id $PID
        $owner = @{ pid = $PID; started = $self.StartTime.ToUniversalTime().Ticks; key = $Key; operation = $Operation }
        $bytes = [Text.Encoding]::UTF8.GetBytes((ConvertTo-Json -InputObject $owner -Compress))
        $stream.Write($bytes, 0, $bytes.Length)
        $stream.Close()
        $stream = $null
        $outcome = & $Body
        if ($outcome.status -ne 'error') {
            $record = [ordered]@{
                key         = $Key
                operation   = $Operation
                status      = $outcome.status
                message     = $outcome.message
                data        = $outcome.data
                code        = $outcome.code
                recorded_at = (Get-Date).ToUniversalTime().ToString('o')
            }
            $tmp = $resultPath + '.' + [guid]::NewGuid().ToString('N') + '.tmp'
            [IO.File]::WriteAllText($tmp, (ConvertTo-Json -InputObject $record -Depth 12 -Compress), (New-Object System.Text.UTF8Encoding($false)))
            [IO.File]::Move($tmp, $resultPath)
        }
        return $outcome
    }
    finally {
        if ($null -ne $stream) { $stream.Close() }
        Remove-Item -LiteralPath $marker -Force -ErrorAction SilentlyContinue
    }
}
