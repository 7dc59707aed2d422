{{/* Labels of every object. */}}
{{- define "tether.labels" -}}
app.kubernetes.io/name: tether
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{/* Selector of the manager's pods. */}}
{{- define "tether.selector" -}}
app.kubernetes.io/name: tether
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: traffic-manager
{{- end }}

{{/* The manager's image; the tag defaults to the chart's appVersion. */}}
{{- define "tether.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/*
The live rules, keyed by the names users know: the traffic-manager
configmap's data, which the manager reads at start (the Deployment's env)
and may change while it runs. manager.LiveKeys are exactly these keys.
*/}}
{{- define "tether.liveRules" -}}
grpc.connectionTTL: {{ .Values.grpc.connectionTTL | quote }}
intercept.inactiveBlockTimeout: {{ .Values.intercept.inactiveBlockTimeout | quote }}
activity.reportInterval: {{ .Values.activity.reportInterval | quote }}
limits.sessionsPerUser: {{ .Values.limits.sessionsPerUser | int | quote }}
limits.tcpFlowsPerSession: {{ .Values.limits.tcpFlowsPerSession | int | quote }}
limits.udpFlowsPerSession: {{ .Values.limits.udpFlowsPerSession | int | quote }}
limits.interceptsPerSession: {{ .Values.limits.interceptsPerSession | int | quote }}
limits.noticesPerSession: {{ .Values.limits.noticesPerSession | int | quote }}
{{- end }}

{{/* Whether the manager listens on the pod's address, not loopback only. */}}
{{- define "tether.listensOnPod" -}}
{{- if or .Values.auth.tokenSecret .Values.grpc.insecureListenAny }}true{{ end }}
{{- end }}

{{/* The mutating webhook's name (issue 13 item 5), which the manager's RBAC names already. */}}
{{- define "tether.webhookName" -}}
tether-agent-injector-{{ .Release.Namespace }}
{{- end }}
