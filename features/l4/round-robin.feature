Feature: ztunnel spreads new L4 connections over the ready replicas, in round robin
  Seed 000 step 2 and seed 003: with no waypoint, the client's ztunnel picks the backend itself,
  spreading connections over every ready replica (L4-RR-1), with an internally fixed round robin
  per new connection (L4-RR-2, the Solo distribution's documented algorithm; upstream Istio picks
  at random weighted by capacity, see BEHAVIORS.md).
  L4-RR-1 is judged as a spread: every replica answers, and the counts pass an exact multinomial
  test of evenness; both at the declared false-alarm rate (0.00001 as bundled) for a mesh that picks evenly at random
  (with 60 requests over 3 replicas, one replica is left out with probability 2.6e-10).
  L4-RR-2 is the one exact-order promise: 12 requests give each replica 4, in a repeating order
  (false-alarm rate 0 for round robin; a uniform random pick passes it with probability 1e-5).

  Background:
    Given the guide's apps "in-ambient" and "client-in-ambient" are deployed
    And "in-ambient" is scaled to 3 replicas

  @L4-RR-1
  Scenario: 60 connections are spread evenly over the 3 replicas
    When the client sends 60 requests to "http://in-ambient:8000/hostname"
    Then the 3 "in-ambient" replicas answered every request, spread evenly, with the declared false-alarm rate

  @L4-RR-2
  Scenario: 12 requests over 3 replicas give each replica 4, in a repeating order
    When the client sends 12 requests to "http://in-ambient:8000/hostname"
    Then each of the 3 "in-ambient" replicas answered 4 requests
    And the replicas answered in a repeating order
