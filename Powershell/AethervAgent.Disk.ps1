<#
.SYNOPSIS
    Disk operations: disk.create (blank or cloned from a golden image, first free SCSI
    location), disk.update (expand only), disk.delete (detach and delete the VHDX).
#>

function Find-AethervDisk {
    param($Vm, [hashtable]$Spec)
    $id = Get-AethervString -Spec $Spec -Key 'resource_id'
    if ($null -eq $id) { $id = Get-AethervString -Spec $Spec -Key 'disk_id' }
    if ($null -eq $id) { Stop-Aetherv -Code 'invalid_argument' -Message "missing required field 'resource_id'" }
    foreach ($d in @(Get-VMHardDiskDrive -VM $Vm)) {
        if ([string]$d.Id -eq $id -or [string]$d.Path -eq $id) { return $d }
    }
    Stop-Aetherv -Code 'not_found' -Message ("disk '" + $id + "' is not attached to VM '" + $Vm.Name + "'")
}

function Invoke-AethervDiskCreate {
    param([hashtable]$Spec)
    $vm = Find-AethervVm -Spec $Spec
    $controller = Get-AethervString -Spec $Spec -Key 'controller_type'
    if ($null -eq $controller) { $controller = 'SCSI' }
    $controller = $controller.ToUpperInvariant()
    if ($controller -eq 'IDE') { Stop-Aetherv -Code 'invalid_argument' -Message 'Generation 2 virtual machines do not support IDE controllers; use SCSI' }
    if ($controller -ne 'SCSI') { Stop-Aetherv -Code 'invalid_argument' -Message ("unknown controller_type '" + $controller + "'") }
    $diskType = Get-AethervString -Spec $Spec -Key 'disk_type'
    if ($null -eq $diskType -or $diskType -eq 'dynamic') { $diskType = 'Dynamic' }
    elseif ($diskType -eq 'fixed') { $diskType = 'Fixed' }
    else { Stop-Aetherv -Code 'invalid_argument' -Message ("disk_type '" + $diskType + "' is not Dynamic or Fixed") }
    $res = Get-AethervHostResources
    $image = $null
    $imageName = Get-AethervString -Spec $Spec -Key 'image_name'
    if ($null -ne $imageName) {
        $match = @(@($res['images']) | Where-Object { $null -ne $_ -and [string]$_['name'] -eq $imageName })
        if ($match.Count -eq 0) { Stop-Aetherv -Code 'not_found' -Message ("image '" + $imageName + "' is not in the image catalogue of " + $env:COMPUTERNAME) }
        $image = $match[0]
        if (-not (Test-Path -LiteralPath ([string]$image['path']) -PathType Leaf)) {
            Stop-Aetherv -Code 'not_found' -Message ("image file '" + $image['path'] + "' does not exist")
        }
    }
    $size = Get-AethervUInt -Spec $Spec -Keys @('disk_size_gb', 'size_gb')
    if ($null -ne $image) {
        $imageSize = [long][math]::Ceiling((Get-VHD -Path ([string]$image['path'])).Size / $script:AethervGiB)
        # A clone is at least as large as its image (Resize-VHD only expands).
        if ($null -ne $size -and $size -lt $imageSize) {
            Write-AethervLog ('WARNING: disk_size_gb ' + $size + " is smaller than image '" + $image['name'] + "' (" + $imageSize + ' GB); keeping the image size')
            $size = $imageSize
        }
        if ($null -eq $size) { $size = $imageSize }
    }
    elseif ($null -eq $size) { Stop-Aetherv -Code 'invalid_argument' -Message "missing required field 'disk_size_gb'" }
    elseif ($size -lt 1 -or $size -gt 65536) { Stop-Aetherv -Code 'invalid_argument' -Message ('disk_size_gb ' + $size + ' is outside 1..65536') }
    $used = @(Get-VMHardDiskDrive -VM $vm -ControllerType SCSI -ControllerNumber 0 | ForEach-Object { [int]$_.ControllerLocation })
    $location = $null
    for ($l = 0; $l -lt 64; $l++) { if ($used -notcontains $l) { $location = $l; break } }
    if ($null -eq $location) { Stop-Aetherv -Code 'no_free_slot' -Message ("no free location on the SCSI controller of VM '" + $vm.Name + "'") }
    $tag = Get-AethervString -Spec $Spec -Key 'file_tag'
    if ($null -eq $tag) { $tag = Get-AethervString -Spec $Spec -Key 'tag' }
    $fileName = Get-AethervString -Spec $Spec -Key 'file_name'
    if ($null -ne $fileName) { $stem = $fileName -replace '\.vhdx$', '' }
    elseif ($null -ne $image) { $stem = [string]$image['name'] + '-' + [guid]::NewGuid().ToString('N').Substring(0, 8) }
    else { $stem = Get-AethervDiskStem -VmName $vm.Name }
    if ($null -ne $tag) { $file = $stem + '-' + $tag + '.vhdx' } else { $file = $stem + '.vhdx' }
    Assert-AethervPathName -Name $file -What "the disk's file name"
    $className = Get-AethervString -Spec $Spec -Key 'storage_class'
    if ($null -ne $className) {
        $class = @(@($res['storage_classes']) | Where-Object { $null -ne $_ -and [string]$_['name'] -eq $className })
        if ($class.Count -eq 0) { Stop-Aetherv -Code 'not_found' -Message ("storage class '" + $className + "' is not defined on " + $env:COMPUTERNAME) }
        $dir = Join-AethervChildPath -Root ([string]$class[0]['path']) -Name $vm.Name -What 'the VM name'
    }
    else { $dir = ([string]$vm.Path).TrimEnd('\') }
    $path = Join-AethervChildPath -Root $dir -Name $file -What "the disk's file name"
    if (Test-Path -LiteralPath $path) { Stop-Aetherv -Code 'name_conflict' -Message ("The file '" + $path + "' already exists.") }
    if (-not (Test-Path -LiteralPath $dir -PathType Container)) { New-Item -ItemType Directory -Path $dir -Force | Out-Null }
    if ($null -ne $image) {
        Write-AethervLog ("Copying image '" + $image['path'] + "' to " + $path)
        Copy-Item -LiteralPath ([string]$image['path']) -Destination $path
        if (([long]$size * $script:AethervGiB) -gt (Get-VHD -Path $path).Size) {
            Write-AethervLog ('Resize-VHD -SizeBytes ' + $size + 'GB')
            Resize-VHD -Path $path -SizeBytes ([long]$size * $script:AethervGiB)
        }
    }
    else {
        Write-AethervLog ("New-VHD -Path '" + $path + "' -SizeBytes " + $size + 'GB -' + $diskType)
        if ($diskType -eq 'Fixed') { New-VHD -Path $path -SizeBytes ([long]$size * $script:AethervGiB) -Fixed | Out-Null }
        else { New-VHD -Path $path -SizeBytes ([long]$size * $script:AethervGiB) -Dynamic | Out-Null }
    }
    $shared = Get-AethervBool -Spec $Spec -Key 'shared'
    Write-AethervLog ('Add-VMHardDiskDrive -ControllerType SCSI -ControllerNumber 0 -ControllerLocation ' + $location)
    try {
        if ($shared) {
            $drive = Add-VMHardDiskDrive -VM $vm -ControllerType SCSI -ControllerNumber 0 -ControllerLocation $location -Path $path -SupportPersistentReservations -Passthru
        }
        else {
            $drive = Add-VMHardDiskDrive -VM $vm -ControllerType SCSI -ControllerNumber 0 -ControllerLocation $location -Path $path -Passthru
        }
    }
    catch {
        Remove-Item -LiteralPath $path -Force -ErrorAction SilentlyContinue
        throw
    }
    $data = Get-AethervDiskView -Drive $drive
    if ($null -ne $image) { $data['image_name'] = [string]$image['name'] }
    $data['vm_id'] = [string]$vm.Id
    $data['vm_name'] = $vm.Name
    $data['status'] = 'created'
    return @{ message = ('Disk ' + $path + " attached to VM '" + $vm.Name + "'"); data = $data }
}

function Invoke-AethervDiskUpdate {
    param([hashtable]$Spec)
    $vm = Find-AethervVm -Spec $Spec
    $drive = Find-AethervDisk -Vm $vm -Spec $Spec
    $want = Get-AethervUInt -Spec $Spec -Keys @('disk_size_gb', 'size_gb')
    if ($null -eq $want) { Stop-Aetherv -Code 'invalid_argument' -Message "missing required field 'disk_size_gb'" }
    $vhd = Get-VHD -Path $drive.Path
    $current = [long][math]::Round($vhd.Size / $script:AethervGiB)
    $applied = @()
    $warnings = @()
    if ($want -lt $current) {
        Stop-Aetherv -Code 'invalid_argument' -Message ("disk '" + $drive.Path + "' is " + $current + ' GB; shrinking to ' + $want + ' GB is not supported (expand only)')
    }
    if ($want -eq $current) { $warnings += ('disk is already ' + $want + ' GB') }
    else {
        Write-AethervLog ("Resize-VHD -Path '" + $drive.Path + "' -SizeBytes " + $want + 'GB')
        Resize-VHD -Path $drive.Path -SizeBytes ([long]$want * $script:AethervGiB)
        $applied += 'disk_size_gb'
        $current = $want
    }
    $message = 'Disk ' + $drive.Path + ' is ' + $current + ' GB'
    return @{
        message = $message
        data    = [ordered]@{ vm_id = [string]$vm.Id; resource_id = [string]$drive.Id; size_gb = $current; updates_applied = $applied; warnings = $warnings; message = $message }
    }
}

function Invoke-AethervDiskDelete {
    param([hashtable]$Spec)
    $vm = Find-AethervVm -Spec $Spec
    $drive = Find-AethervDisk -Vm $vm -Spec $Spec
    $id = [string]$drive.Id
    $path = [string]$drive.Path
    Write-AethervLog ("Remove-VMHardDiskDrive '" + $path + "' from '" + $vm.Name + "'")
    Remove-VMHardDiskDrive -VMHardDiskDrive $drive
    Write-AethervLog ("Remove-Item '" + $path + "'")
    Remove-Item -LiteralPath $path -Force
    return @{
        message = ('Disk ' + $path + ' deleted')
        data    = [ordered]@{ disk_id = $id; disk_path = $path; vm_id = [string]$vm.Id; status = 'deleted' }
    }
}
