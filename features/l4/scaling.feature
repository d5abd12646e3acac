Feature: scaling a deployment changes the set of replicas that answer
  Seed 000 step 1 scales in-ambient from 1 to 3 replicas; the new pods join the rotation once they
  are ready, and pods removed by scaling down leave it. With one replica the count is exact; with
  three, every replica must answer 32 requests (a mesh picking evenly at random leaves one out
  with probability at most 3 (2/3)^32 = 7.6e-6: the declared false-alarm rate, 0.00001 as bundled).

  Background:
    Given the guide's apps "in-ambient" and "client-in-ambient" are deployed

  @L4-RR-4 @needs-scale
  Scenario: scaling from 1 to 3 replicas adds the new pods, scaling back to 1 removes them
    When the client sends 3 requests to "http://in-ambient:8000/hostname"
    Then each of the 1 "in-ambient" replicas answered 3 requests
    When "in-ambient" is scaled to 3 replicas
    And the client sends 32 requests to "http://in-ambient:8000/hostname"
    Then the 3 "in-ambient" replicas answered every request, each at least once, with the declared false-alarm rate
    When "in-ambient" is scaled to 1 replica
    And the client sends 6 requests to "http://in-ambient:8000/hostname"
    Then each of the 1 "in-ambient" replicas answered 6 requests
