{{- define "aetherv.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "aetherv.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "aetherv.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "aetherv.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* The environment variable holding a host's password. */}}
{{- define "aetherv.passwordEnv" -}}
AETHERV_HOST_{{ regexReplaceAll "[^A-Z0-9]" (upper .) "_" }}_PASSWORD
{{- end -}}

{{- define "aetherv.rabbitName" -}}
{{ include "aetherv.fullname" . }}-rabbitmq
{{- end -}}

{{- define "aetherv.brokerSecret" -}}
{{- if .Values.broker.external.existingSecret -}}
{{ .Values.broker.external.existingSecret }}
{{- else -}}
{{ include "aetherv.fullname" . }}-broker
{{- end -}}
{{- end -}}

{{- define "aetherv.userSecret" -}}
{{- if .root.Values.broker.operator.users.existingSecret -}}
{{ .root.Values.broker.operator.users.existingSecret }}-{{ .user }}
{{- else -}}
{{ include "aetherv.fullname" .root }}-rabbitmq-{{ .user }}
{{- end -}}
{{- end -}}

{{/* The AMQP URL env of a component (bot or worker): from the broker Secret, or assembled
from the operator-managed user's Secret (Kubernetes expands $(VAR) in env values). */}}
{{- define "aetherv.amqpEnv" -}}
{{- if eq .root.Values.broker.mode "operator" }}
- name: AMQP_USER
  valueFrom: {secretKeyRef: {name: {{ include "aetherv.userSecret" (dict "root" .root "user" .user) }}, key: username}}
- name: AMQP_PASSWORD
  valueFrom: {secretKeyRef: {name: {{ include "aetherv.userSecret" (dict "root" .root "user" .user) }}, key: password}}
- name: AETHERV_AMQP_URL
  value: "amqp://$(AMQP_USER):$(AMQP_PASSWORD)@{{ include "aetherv.rabbitName" .root }}.{{ .root.Release.Namespace }}.svc:5672/%2f"
{{- else }}
- name: AETHERV_AMQP_URL
  valueFrom: {secretKeyRef: {name: {{ include "aetherv.brokerSecret" .root }}, key: {{ .user }}-url}}
{{- end }}
{{- end -}}

{{- define "aetherv.commonEnv" -}}
- name: AETHERV_PREFIX
  value: {{ .Values.prefix | quote }}
- name: AETHERV_LOG
  value: {{ .Values.log.level | quote }}
- name: AETHERV_LOG_FORMAT
  value: {{ .Values.log.format | quote }}
- name: AETHERV_HEALTH_LISTEN
  value: "0.0.0.0:{{ .Values.healthPort }}"
{{- end -}}

{{- define "aetherv.probes" -}}
livenessProbe:
  httpGet: {path: /healthz, port: health}
  periodSeconds: 10
  failureThreshold: 3
readinessProbe:
  httpGet: {path: /readyz, port: health}
  periodSeconds: 5
  failureThreshold: 2
startupProbe:
  httpGet: {path: /healthz, port: health}
  periodSeconds: 2
  failureThreshold: 60
{{- end -}}

{{/* The hosts this release's workers serve. */}}
{{- define "aetherv.servedHosts" -}}
{{- $subset := .Values.worker.hostSubset -}}
{{- $out := list -}}
{{- range .Values.worker.hosts -}}
{{- if or (not $subset) (has .name $subset) -}}
{{- $out = append $out . -}}
{{- end -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}
